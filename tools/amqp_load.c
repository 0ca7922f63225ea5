/* amqp-load: a lean AMQP 0-9-1 load generator in C on librabbitmq (rabbitmq-c).
 *
 * The 1-publisher/1-consumer case of `tools/loadtest.py amqp`, for measuring a broker's
 * CPU per message with a client that costs about half the CPU of the Python tool (a
 * third of its user time). One publisher thread and one consumer thread, each with its
 * own connection (librabbitmq connections are not thread-safe), share atomic counters:
 * messages written, messages delivered, and whether the publisher has finished.
 *
 * Publisher: Basic.Publish to the default exchange with the queue name as routing key;
 * the body starts with an 8-byte big-endian CLOCK_REALTIME send timestamp in ns. As in
 * the Python tool, one publish is encoded once (here by librabbitmq's own encoders) and
 * a batch of copies, each with its timestamp patched in, goes out in one send():
 * amqp_basic_publish() makes three send() calls a message, which cost the client more
 * CPU than the whole Python tool spends (--basic-publish uses it anyway). With
 * --confirms it keeps at most --confirm-window publishes unconfirmed and counts a
 * publish once confirmed. With --max-backlog N it never lets written - delivered exceed
 * N (it sleeps until the consumer has made room for a batch), so an unthrottled
 * publisher cannot build an ever-growing queue.
 *
 * Consumer: Basic.Qos(--prefetch), Basic.Consume, acks with multiple=true every
 * --ack-every deliveries (and when idle), records each message's latency (arrival time
 * against the body's timestamp; same host) in a histogram, and stops once it has
 * received everything written, or after --drain seconds without a delivery once the
 * publisher has stopped.
 *
 * Output: the keys of tools/loadtest_common.py's Result.summary(), as a one-element
 * JSON list with --json.
 *
 * Build: `make amqp-load` (gcc -O2 ... -lrabbitmq, needs Debian's librabbitmq-dev);
 * the binary is build/amqp-load.
 */
#define _GNU_SOURCE
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define CHANNEL 1

static struct {
  const char *host, *user, *password, *vhost, *queue, *label;
  int port;
  long size, prefetch, ack_every, confirm_window, batch, max_backlog;
  long long count;
  double rate, duration, drain;
  int no_ack, persistent, confirms, json, basic_publish;
} opt = {
    .host = "127.0.0.1", .user = "guest", .password = "guest", .vhost = "/",
    .queue = "loadtest-0", .label = "", .port = 5672, .size = 1024, .prefetch = 200,
    .ack_every = 10, .confirm_window = 1000, .batch = 50, .max_backlog = 0, .count = 0,
    .rate = 0, .duration = 10, .drain = 3,
};

/* Shared between the threads. */
static _Atomic long long written;   /* publishes written to the socket */
static _Atomic long long published; /* confirmed ones with --confirms, else written */
static _Atomic long long delivered;
static _Atomic int publisher_done, consumer_ready;
/* --max-backlog: the publisher sleeps on backlog_cond until `delivered` reaches wake_at;
 * the consumer signals once when it does (LLONG_MAX: nobody waits). */
static _Atomic long long wake_at = LLONG_MAX;
static pthread_mutex_t backlog_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t backlog_cond = PTHREAD_COND_INITIALIZER;

static struct {
  long long published, nacked;
  double seconds;
} pub_result;

static struct {
  long long delivered;
  double seconds;
} con_result;

/* Latency histogram: 1 µs buckets below 1 s, 1 ms buckets from 1 s to 10 min (the last
 * bucket takes anything longer); the maximum is kept exactly. */
#define FINE_US 1000000
#define COARSE_MS 600000
static uint32_t lat_fine[FINE_US];
static uint32_t lat_coarse[COARSE_MS];
static long long lat_count, lat_max_us;

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("amqp-load: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(1);
}

static double mono_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t real_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_us(long us) {
  struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
  nanosleep(&ts, NULL);
}

static void check_reply(amqp_rpc_reply_t reply, const char *what) {
  switch (reply.reply_type) {
  case AMQP_RESPONSE_NORMAL:
    return;
  case AMQP_RESPONSE_NONE:
    die("%s: missing RPC reply", what);
    break;
  case AMQP_RESPONSE_LIBRARY_EXCEPTION:
    die("%s: %s", what, amqp_error_string2(reply.library_error));
    break;
  case AMQP_RESPONSE_SERVER_EXCEPTION:
    if (reply.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
      amqp_connection_close_t *m = reply.reply.decoded;
      die("%s: broker closed the connection: %d %.*s", what, m->reply_code,
          (int)m->reply_text.len, (char *)m->reply_text.bytes);
    } else if (reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
      amqp_channel_close_t *m = reply.reply.decoded;
      die("%s: broker closed the channel: %d %.*s", what, m->reply_code,
          (int)m->reply_text.len, (char *)m->reply_text.bytes);
    }
    die("%s: unexpected server method 0x%08x", what, reply.reply.id);
  }
}

/* A method frame that ends the run: a channel or connection close from the broker. */
static void check_close(const amqp_frame_t *frame, const char *who) {
  if (frame->frame_type != AMQP_FRAME_METHOD)
    return;
  amqp_method_t method = frame->payload.method;
  if (method.id == AMQP_CHANNEL_CLOSE_METHOD) {
    amqp_channel_close_t *m = method.decoded;
    die("%s: broker closed the channel: %d %.*s", who, m->reply_code,
        (int)m->reply_text.len, (char *)m->reply_text.bytes);
  }
  if (method.id == AMQP_CONNECTION_CLOSE_METHOD) {
    amqp_connection_close_t *m = method.decoded;
    die("%s: broker closed the connection: %d %.*s", who, m->reply_code,
        (int)m->reply_text.len, (char *)m->reply_text.bytes);
  }
  if (method.id == AMQP_BASIC_CANCEL_METHOD)
    die("%s: broker cancelled the consumer", who);
}

static amqp_connection_state_t open_connection(const char *who) {
  amqp_connection_state_t conn = amqp_new_connection();
  amqp_socket_t *sock = amqp_tcp_socket_new(conn);
  if (!sock)
    die("%s: cannot create a socket", who);
  int rc = amqp_socket_open(sock, opt.host, opt.port);
  if (rc != AMQP_STATUS_OK)
    die("%s: cannot connect to %s:%d: %s", who, opt.host, opt.port, amqp_error_string2(rc));
  int one = 1;
  setsockopt(amqp_get_sockfd(conn), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  amqp_table_entry_t entry = {amqp_cstring_bytes("product"),
                              {AMQP_FIELD_KIND_UTF8, {.bytes = amqp_cstring_bytes("portask-amqp-load")}}};
  amqp_table_t props = {1, &entry};
  check_reply(amqp_login_with_properties(conn, opt.vhost, 0, 131072, 0, &props,
                                         AMQP_SASL_METHOD_PLAIN, opt.user, opt.password),
              "login");
  amqp_channel_open(conn, CHANNEL);
  check_reply(amqp_get_rpc_reply(conn), "channel.open");
  return conn;
}

static void close_connection(amqp_connection_state_t conn) {
  amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
  amqp_destroy_connection(conn);
}

/* Delete and declare the queue (durable with --persistent), like loadtest_amqp.setup(). */
static void setup(void) {
  amqp_connection_state_t conn = open_connection("setup");
  amqp_bytes_t queue = amqp_cstring_bytes(opt.queue);
  amqp_queue_delete(conn, CHANNEL, queue, 0, 0);
  check_reply(amqp_get_rpc_reply(conn), "queue.delete");
  amqp_queue_declare(conn, CHANNEL, queue, 0, opt.persistent, 0, 0, amqp_empty_table);
  check_reply(amqp_get_rpc_reply(conn), "queue.declare");
  close_connection(conn);
}

/* Read the publisher's confirms: wait up to timeout_us for the first frame, then take
 * whatever else has already arrived. Returns the highest confirmed delivery tag. */
static long long read_confirms(amqp_connection_state_t conn, long long confirmed,
                               long long *nacked, long timeout_us) {
  struct timeval tv = {timeout_us / 1000000, timeout_us % 1000000};
  for (;;) {
    amqp_frame_t frame;
    int rc = amqp_simple_wait_frame_noblock(conn, &frame, &tv);
    if (rc == AMQP_STATUS_TIMEOUT)
      break;
    if (rc != AMQP_STATUS_OK)
      die("publisher: reading confirms: %s", amqp_error_string2(rc));
    check_close(&frame, "publisher");
    if (frame.frame_type == AMQP_FRAME_METHOD) {
      long long tag = -1;
      if (frame.payload.method.id == AMQP_BASIC_ACK_METHOD) {
        tag = (long long)((amqp_basic_ack_t *)frame.payload.method.decoded)->delivery_tag;
      } else if (frame.payload.method.id == AMQP_BASIC_NACK_METHOD) {
        tag = (long long)((amqp_basic_nack_t *)frame.payload.method.decoded)->delivery_tag;
        (*nacked)++;
      }
      /* As the Python tool: a single ack of tag t counts as confirming up to t. */
      if (tag > confirmed)
        confirmed = tag;
    }
    tv.tv_sec = tv.tv_usec = 0;
  }
  amqp_maybe_release_buffers(conn);
  return confirmed;
}

static void cork(int fd, int on) {
  setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof on);
}

static void put16(unsigned char *p, uint16_t v) {
  p[0] = (unsigned char)(v >> 8), p[1] = (unsigned char)v;
}

static void put32(unsigned char *p, uint32_t v) {
  put16(p, (uint16_t)(v >> 16)), put16(p + 2, (uint16_t)v);
}

static void put64(unsigned char *p, uint64_t v) {
  put32(p, (uint32_t)(v >> 32)), put32(p + 4, (uint32_t)v);
}

/* One whole publish (method, content header and body frames) as librabbitmq's encoders
 * write it; returns its length and sets *ts_at to the body's first byte, where each
 * copy's send timestamp goes. The same bytes amqp_basic_publish() sends, but a batch of
 * them can then go out in one send() instead of three per message. */
static size_t encode_publish(unsigned char *out, size_t cap, amqp_bytes_t exchange,
                             amqp_bytes_t routing_key, amqp_basic_properties_t *props,
                             size_t size, size_t *ts_at) {
  amqp_basic_publish_t m = {0, exchange, routing_key, 0, 0};
  size_t at = 0;
  /* Method frame: type, channel, size, class+method id, arguments, frame end. */
  int n = amqp_encode_method(AMQP_BASIC_PUBLISH_METHOD, &m,
                             (amqp_bytes_t){cap - at - 12, out + at + 11});
  if (n <= 0)
    die("encoding basic.publish failed (%d): try --basic-publish", n);
  out[at] = AMQP_FRAME_METHOD, put16(out + at + 1, CHANNEL), put32(out + at + 3, (uint32_t)n + 4);
  put32(out + at + 7, AMQP_BASIC_PUBLISH_METHOD);
  at += 11 + (size_t)n, out[at++] = AMQP_FRAME_END;
  /* Content header frame: class, weight, body size, property flags and values. */
  n = amqp_encode_properties(AMQP_BASIC_CLASS, props,
                             (amqp_bytes_t){cap - at - 20, out + at + 19});
  if (n <= 0)
    die("encoding the content header failed (%d): try --basic-publish", n);
  out[at] = AMQP_FRAME_HEADER, put16(out + at + 1, CHANNEL), put32(out + at + 3, (uint32_t)n + 12);
  put16(out + at + 7, AMQP_BASIC_CLASS), put16(out + at + 9, 0), put64(out + at + 11, size);
  at += 19 + (size_t)n, out[at++] = AMQP_FRAME_END;
  /* Body frame. */
  if (at + 8 + size > cap)
    die("message too large");
  out[at] = AMQP_FRAME_BODY, put16(out + at + 1, CHANNEL), put32(out + at + 3, (uint32_t)size);
  *ts_at = at + 7;
  memset(out + at + 7, 'x', size);
  at += 7 + size, out[at++] = AMQP_FRAME_END;
  return at;
}

/* Sleep until the consumer has delivered `target` messages (or for 10 ms at most). */
static void wait_for_deliveries(long long target) {
  pthread_mutex_lock(&backlog_lock);
  atomic_store(&wake_at, target);
  if (atomic_load(&delivered) < target) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += 10000000;
    if (until.tv_nsec >= 1000000000)
      until.tv_sec++, until.tv_nsec -= 1000000000;
    pthread_cond_timedwait(&backlog_cond, &backlog_lock, &until);
  }
  atomic_store(&wake_at, LLONG_MAX);
  pthread_mutex_unlock(&backlog_lock);
}

/* Write all of buf to the connection's (non-blocking) socket. */
static void send_all(int fd, const unsigned char *buf, size_t len) {
  while (len) {
    ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
    if (n > 0) {
      buf += n, len -= (size_t)n;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      struct pollfd p = {fd, POLLOUT, 0};
      poll(&p, 1, 1000);
    } else {
      die("publisher: send: %s", n < 0 ? strerror(errno) : "connection closed");
    }
  }
}

static void *publisher(void *unused) {
  (void)unused;
  amqp_connection_state_t conn = open_connection("publisher");
  int fd = amqp_get_sockfd(conn);
  if (opt.confirms) {
    amqp_confirm_select(conn, CHANNEL);
    check_reply(amqp_get_rpc_reply(conn), "confirm.select");
  }
  size_t size = opt.size < 8 ? 8 : (size_t)opt.size;
  unsigned char *body = malloc(size);
  if (!body)
    die("out of memory");
  memset(body, 'x', size);
  amqp_basic_properties_t props;
  memset(&props, 0, sizeof props);
  props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG;
  props.content_type = amqp_cstring_bytes("application/octet-stream");
  props.delivery_mode = opt.persistent ? 2 : 1;
  amqp_bytes_t exchange = amqp_empty_bytes, routing_key = amqp_cstring_bytes(opt.queue);
  amqp_bytes_t message = {size, body};

  long batch = opt.rate > 0 && opt.rate < 2000 ? 1 : opt.batch;
  /* Unless --basic-publish: `batch` encoded copies of the publish, sent in one go. */
  size_t one = 0, ts_at = 0;
  unsigned char *frames = NULL;
  if (!opt.basic_publish) {
    size_t cap = size + 1024 + strlen(opt.queue);
    frames = malloc(cap * (size_t)batch);
    if (!frames)
      die("out of memory");
    one = encode_publish(frames, cap, exchange, routing_key, &props, size, &ts_at);
    for (long i = 1; i < batch; i++)
      memcpy(frames + (size_t)i * one, frames, one);
  }
  long long sent = 0, confirmed = 0, nacked = 0;
  double start = mono_s(), end = start + opt.duration;
  for (;;) {
    double now = mono_s();
    if (opt.count ? sent >= opt.count : now >= end)
      break;
    long long n = batch;
    if (opt.count && opt.count - sent < n)
      n = opt.count - sent;
    if (opt.rate > 0) {
      long long due = (long long)((now - start) * opt.rate) - sent;
      if (due <= 0) {
        sleep_us(200);
        continue;
      }
      if (due < n)
        n = due;
    }
    if (opt.max_backlog > 0) {
      long long room = opt.max_backlog - (sent - atomic_load(&delivered));
      if (room <= 0) {
        if (opt.confirms && sent > confirmed)
          confirmed = read_confirms(conn, confirmed, &nacked, 0);
        atomic_store(&published, opt.confirms ? confirmed : sent);
        /* Resume with room for a whole batch: fewer, fuller writes. */
        wait_for_deliveries(sent - opt.max_backlog + (batch < opt.max_backlog ? batch : opt.max_backlog));
        continue;
      }
      if (room < n)
        n = room;
    }
    if (opt.confirms) {
      while (sent - confirmed >= opt.confirm_window) {
        confirmed = read_confirms(conn, confirmed, &nacked, 1000000);
        if (!opt.count && mono_s() >= end + 10)
          die("publisher: no confirms for 10 s");
      }
      if (n > opt.confirm_window - (sent - confirmed))
        n = opt.confirm_window - (sent - confirmed);
    }
    if (frames) {
      for (long long i = 0; i < n; i++)
        put64(frames + (size_t)i * one + ts_at, (uint64_t)real_ns());
      send_all(fd, frames, (size_t)n * one);
    } else {
      if (n > 1)
        cork(fd, 1);
      for (long long i = 0; i < n; i++) {
        put64(body, (uint64_t)real_ns());
        int rc = amqp_basic_publish(conn, CHANNEL, exchange, routing_key, 0, 0, &props, message);
        if (rc != AMQP_STATUS_OK)
          die("publisher: basic.publish: %s", amqp_error_string2(rc));
      }
      if (n > 1)
        cork(fd, 0);
    }
    sent += n;
    atomic_store(&written, sent);
    if (opt.confirms)
      confirmed = read_confirms(conn, confirmed, &nacked, 0);
    atomic_store(&published, opt.confirms ? confirmed : sent);
  }
  if (opt.confirms) {
    double deadline = mono_s() + 10;
    while (confirmed < sent && mono_s() < deadline)
      confirmed = read_confirms(conn, confirmed, &nacked, 200000);
    atomic_store(&published, confirmed);
  }
  pub_result.seconds = mono_s() - start;
  pub_result.published = opt.confirms ? confirmed : sent;
  pub_result.nacked = nacked;
  atomic_store(&publisher_done, 1);
  free(body);
  free(frames);
  close_connection(conn);
  return NULL;
}

static void record_latency(int64_t us) {
  if (us < 0)
    us = 0;
  if (us < FINE_US) {
    lat_fine[us]++;
  } else {
    int64_t i = (us - FINE_US) / 1000;
    lat_coarse[i < COARSE_MS ? i : COARSE_MS - 1]++;
  }
  lat_count++;
  if (us > lat_max_us)
    lat_max_us = us;
}

/* Nearest-rank percentile in µs, as loadtest_common.percentile(). */
static double latency_percentile(double q) {
  long long rank = (long long)ceil(q * (double)lat_count) - 1;
  if (rank < 0)
    rank = 0;
  if (rank > lat_count - 1)
    rank = lat_count - 1;
  long long seen = 0;
  for (long i = 0; i < FINE_US; i++) {
    seen += lat_fine[i];
    if (seen > rank)
      return (double)i;
  }
  for (long i = 0; i < COARSE_MS; i++) {
    seen += lat_coarse[i];
    if (seen > rank) {
      double us = (double)FINE_US + (double)i * 1000;
      return us < (double)lat_max_us ? us : (double)lat_max_us;
    }
  }
  return (double)lat_max_us;
}

static void *consumer(void *unused) {
  (void)unused;
  amqp_connection_state_t conn = open_connection("consumer");
  amqp_basic_qos(conn, CHANNEL, 0, (uint16_t)opt.prefetch, 0);
  check_reply(amqp_get_rpc_reply(conn), "basic.qos");
  amqp_basic_consume(conn, CHANNEL, amqp_cstring_bytes(opt.queue), amqp_empty_bytes, 0,
                     opt.no_ack, 0, amqp_empty_table);
  check_reply(amqp_get_rpc_reply(conn), "basic.consume");
  atomic_store(&consumer_ready, 1);

  long long count = 0;
  uint64_t last_tag = 0, acked_tag = 0;
  double first = 0, last = 0, done_at = 0;
  for (;;) {
    amqp_envelope_t envelope;
    struct timeval tv = {0, 100000};
    amqp_maybe_release_buffers(conn);
    /* No timeout (and no clock read) while the read buffer still holds frames. */
    amqp_rpc_reply_t reply =
        amqp_consume_message(conn, &envelope, amqp_data_in_buffer(conn) ? NULL : &tv, 0);
    if (reply.reply_type == AMQP_RESPONSE_NORMAL) {
      int64_t now_ns = real_ns();
      last = (double)now_ns / 1e9;
      if (!count)
        first = last;
      amqp_bytes_t b = envelope.message.body;
      if (b.len >= 8) {
        const unsigned char *p = b.bytes;
        uint64_t sent_ns = 0;
        for (int i = 0; i < 8; i++)
          sent_ns = sent_ns << 8 | p[i];
        record_latency((now_ns - (int64_t)sent_ns) / 1000);
      }
      last_tag = envelope.delivery_tag;
      amqp_destroy_envelope(&envelope);
      atomic_store(&delivered, ++count);
      long long target = atomic_load(&wake_at);
      if (count >= target && atomic_compare_exchange_strong(&wake_at, &target, LLONG_MAX)) {
        pthread_mutex_lock(&backlog_lock);
        pthread_cond_signal(&backlog_cond);
        pthread_mutex_unlock(&backlog_lock);
      }
      if (!opt.no_ack && last_tag - acked_tag >= (uint64_t)opt.ack_every) {
        if (amqp_basic_ack(conn, CHANNEL, last_tag, 1) != AMQP_STATUS_OK)
          die("consumer: basic.ack failed");
        acked_tag = last_tag;
      }
    } else if (reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
               reply.library_error == AMQP_STATUS_TIMEOUT) {
      if (!opt.no_ack && last_tag > acked_tag) {
        if (amqp_basic_ack(conn, CHANNEL, last_tag, 1) != AMQP_STATUS_OK)
          die("consumer: basic.ack failed");
        acked_tag = last_tag;
      }
    } else if (reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
               reply.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
      /* Something other than a delivery: a close ends the run, anything else is skipped. */
      amqp_frame_t frame;
      int rc = amqp_simple_wait_frame(conn, &frame);
      if (rc != AMQP_STATUS_OK)
        die("consumer: %s", amqp_error_string2(rc));
      check_close(&frame, "consumer");
    } else {
      check_reply(reply, "consumer");
    }
    if (atomic_load(&publisher_done)) {
      double now = (double)real_ns() / 1e9;
      if (!done_at)
        done_at = now;
      if (count >= atomic_load(&written))
        break;
      if (now - (last > done_at ? last : done_at) > opt.drain)
        break;
    }
  }
  if (!opt.no_ack && last_tag > acked_tag)
    amqp_basic_ack(conn, CHANNEL, last_tag, 1);
  con_result.delivered = count;
  con_result.seconds = count ? last - first : 0;
  close_connection(conn);
  return NULL;
}

static void json_string(const char *s) {
  putchar('"');
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\')
      printf("\\%c", c);
    else if (c < 0x20)
      printf("\\u%04x", c);
    else
      putchar(c);
  }
  putchar('"');
}

static void print_ms(const char *key, double us, int last) {
  printf("    \"%s\": ", key);
  if (lat_count)
    printf("%.3f", us / 1000);
  else
    printf("null");
  printf("%s\n", last ? "" : ",");
}

static void report(void) {
  char target[512];
  if (*opt.label)
    snprintf(target, sizeof target, "%s", opt.label);
  else
    snprintf(target, sizeof target, "%s:%d", opt.host, opt.port);
  double seconds = pub_result.seconds > 0 ? pub_result.seconds : 1e-9;
  double dseconds = con_result.seconds > 0 ? con_result.seconds : seconds;
  double pub_rate = (double)pub_result.published / seconds;
  double dlv_rate = (double)con_result.delivered / dseconds;
  double size = (double)(opt.size < 8 ? 8 : opt.size);
  double p50 = latency_percentile(0.50), p95 = latency_percentile(0.95),
         p99 = latency_percentile(0.99), max = (double)lat_max_us;
  if (!opt.json) {
    printf("%s: published %lld in %.2f s (%.0f msg/s, %.2f MB/s), delivered %lld "
           "(%.0f msg/s)\n", target, pub_result.published, pub_result.seconds, pub_rate,
           pub_rate * size / 1e6, con_result.delivered, dlv_rate);
    if (lat_count)
      printf("latency ms: p50 %.3f  p95 %.3f  p99 %.3f  max %.3f  (%lld samples)\n",
             p50 / 1000, p95 / 1000, p99 / 1000, max / 1000, lat_count);
    if (pub_result.nacked)
      printf("nacked: %lld\n", pub_result.nacked);
    return;
  }
  printf("[\n  {\n    \"target\": ");
  json_string(target);
  printf(",\n    \"seconds\": %.3f,\n", pub_result.seconds);
  printf("    \"published\": %lld,\n    \"delivered\": %lld,\n", pub_result.published,
         con_result.delivered);
  printf("    \"publish_msg_s\": %.0f,\n    \"deliver_msg_s\": %.0f,\n", pub_rate, dlv_rate);
  printf("    \"publish_mb_s\": %.2f,\n    \"deliver_mb_s\": %.2f,\n", pub_rate * size / 1e6,
         dlv_rate * size / 1e6);
  printf("    \"deliver_seconds\": %.3f,\n", con_result.seconds);
  printf("    \"nacked\": %lld,\n", pub_result.nacked);
  printf("    \"latency_samples\": %lld,\n", lat_count);
  printf("    \"settings\": {\"client\": \"c\", \"host\": ");
  json_string(opt.host);
  printf(", \"port\": %d, \"user\": ", opt.port);
  json_string(opt.user);
  printf(", \"vhost\": ");
  json_string(opt.vhost);
  printf(", \"queue\": ");
  json_string(opt.queue);
  printf(", \"size\": %ld, \"prefetch\": %ld, \"ack_every\": %ld, \"no_ack\": %s, "
         "\"persistent\": %s, \"confirms\": %s, \"confirm_window\": %ld, \"rate\": %g, "
         "\"duration\": %g, \"count\": %lld, \"max_backlog\": %ld, \"batch\": %ld, "
         "\"drain\": %g, \"basic_publish\": %s},\n",
         opt.size, opt.prefetch, opt.ack_every, opt.no_ack ? "true" : "false",
         opt.persistent ? "true" : "false", opt.confirms ? "true" : "false",
         opt.confirm_window, opt.rate, opt.duration, opt.count, opt.max_backlog, opt.batch,
         opt.drain, opt.basic_publish ? "true" : "false");
  print_ms("latency_p50_ms", p50, 0);
  print_ms("latency_p95_ms", p95, 0);
  print_ms("latency_p99_ms", p99, 0);
  print_ms("latency_max_ms", max, 1);
  printf("  }\n]\n");
}

static void usage(FILE *out) {
  fputs(
      "usage: amqp-load [options]\n"
      "One publisher and one consumer thread against one queue (see tools/amqp_load.c).\n"
      "  --host H            broker host (127.0.0.1)\n"
      "  --port P            AMQP port (5672)\n"
      "  --user U, --password P, --vhost V   credentials (guest/guest, /)\n"
      "  --queue NAME        queue, deleted and declared first (loadtest-0)\n"
      "  --size N            body bytes, >= 8 (1024)\n"
      "  --prefetch N        consumer prefetch count (200)\n"
      "  --ack-every N       ack with multiple=true every N deliveries (10)\n"
      "  --no-ack            consume with no_ack\n"
      "  --persistent        durable queue and delivery_mode 2\n"
      "  --confirms          publisher confirms\n"
      "  --confirm-window N  most unconfirmed publishes in flight (1000)\n"
      "  --rate R            total publish rate, msg/s (0 = unthrottled)\n"
      "  --duration S        seconds to publish (10)\n"
      "  --count N           messages to publish (overrides --duration)\n"
      "  --max-backlog N     wait while published - delivered > N (0 = unlimited)\n"
      "  --batch N           publishes per write (50; 1 when --rate < 2000)\n"
      "  --basic-publish     publish with amqp_basic_publish(), three send()s a message\n"
      "                      (corked per batch), instead of batches of pre-encoded frames\n"
      "  --drain S           stop consuming S seconds after the last delivery once the\n"
      "                      publisher has stopped (3)\n"
      "  --label NAME        name of the target in the report (host:port)\n"
      "  --json              print results as JSON (a one-element list)\n",
      out);
}

static long parse_long(const char *name, const char *value, long min) {
  char *end;
  long v = strtol(value, &end, 10);
  if (*value == '\0' || *end != '\0' || v < min)
    die("--%s: expected an integer >= %ld, got '%s'", name, min, value);
  return v;
}

static double parse_double(const char *name, const char *value) {
  char *end;
  double v = strtod(value, &end);
  if (*value == '\0' || *end != '\0' || v < 0)
    die("--%s: expected a number >= 0, got '%s'", name, value);
  return v;
}

static void parse_args(int argc, char **argv) {
  enum { HOST = 256, PORT, USER, PASSWORD, VHOST, QUEUE, SIZE, PREFETCH, ACK_EVERY, NO_ACK,
         PERSISTENT, CONFIRMS, CONFIRM_WINDOW, RATE, DURATION, COUNT, MAX_BACKLOG, BATCH,
         DRAIN, LABEL, JSON, BASIC_PUBLISH, HELP };
  static const struct option longopts[] = {
      {"host", required_argument, 0, HOST},
      {"port", required_argument, 0, PORT},
      {"user", required_argument, 0, USER},
      {"password", required_argument, 0, PASSWORD},
      {"vhost", required_argument, 0, VHOST},
      {"queue", required_argument, 0, QUEUE},
      {"size", required_argument, 0, SIZE},
      {"prefetch", required_argument, 0, PREFETCH},
      {"ack-every", required_argument, 0, ACK_EVERY},
      {"no-ack", no_argument, 0, NO_ACK},
      {"persistent", no_argument, 0, PERSISTENT},
      {"confirms", no_argument, 0, CONFIRMS},
      {"confirm-window", required_argument, 0, CONFIRM_WINDOW},
      {"rate", required_argument, 0, RATE},
      {"duration", required_argument, 0, DURATION},
      {"count", required_argument, 0, COUNT},
      {"max-backlog", required_argument, 0, MAX_BACKLOG},
      {"batch", required_argument, 0, BATCH},
      {"drain", required_argument, 0, DRAIN},
      {"label", required_argument, 0, LABEL},
      {"json", no_argument, 0, JSON},
      {"basic-publish", no_argument, 0, BASIC_PUBLISH},
      {"help", no_argument, 0, HELP},
      {0, 0, 0, 0},
  };
  int c;
  while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
    const char *name = c >= HOST && c <= HELP ? longopts[c - HOST].name : "";
    switch (c) {
    case HOST: opt.host = optarg; break;
    case PORT: opt.port = (int)parse_long(name, optarg, 1); break;
    case USER: opt.user = optarg; break;
    case PASSWORD: opt.password = optarg; break;
    case VHOST: opt.vhost = optarg; break;
    case QUEUE: opt.queue = optarg; break;
    case SIZE: opt.size = parse_long(name, optarg, 8); break;
    case PREFETCH: opt.prefetch = parse_long(name, optarg, 0); break;
    case ACK_EVERY: opt.ack_every = parse_long(name, optarg, 1); break;
    case NO_ACK: opt.no_ack = 1; break;
    case PERSISTENT: opt.persistent = 1; break;
    case CONFIRMS: opt.confirms = 1; break;
    case CONFIRM_WINDOW: opt.confirm_window = parse_long(name, optarg, 1); break;
    case RATE: opt.rate = parse_double(name, optarg); break;
    case DURATION: opt.duration = parse_double(name, optarg); break;
    case COUNT: opt.count = parse_long(name, optarg, 0); break;
    case MAX_BACKLOG: opt.max_backlog = parse_long(name, optarg, 0); break;
    case BATCH: opt.batch = parse_long(name, optarg, 1); break;
    case DRAIN: opt.drain = parse_double(name, optarg); break;
    case LABEL: opt.label = optarg; break;
    case JSON: opt.json = 1; break;
    case BASIC_PUBLISH: opt.basic_publish = 1; break;
    case 'h':
    case HELP: usage(stdout); exit(0);
    default: usage(stderr); exit(2);
    }
  }
  if (optind < argc) {
    fprintf(stderr, "amqp-load: unexpected argument '%s'\n", argv[optind]);
    usage(stderr);
    exit(2);
  }
  if (opt.prefetch > 65535)
    die("--prefetch must fit 16 bits");
  if (!opt.no_ack && opt.prefetch && opt.ack_every > opt.prefetch)
    die("--ack-every must not exceed --prefetch, or the consumer stalls");
  if (opt.size > 131072 - 8)
    die("--size must fit one body frame (at most %d)", 131072 - 8);
}

int main(int argc, char **argv) {
  parse_args(argc, argv);
  setup();
  pthread_t pub, con;
  if (pthread_create(&con, NULL, consumer, NULL))
    die("cannot start the consumer thread");
  while (!atomic_load(&consumer_ready))
    sleep_us(1000);
  if (pthread_create(&pub, NULL, publisher, NULL))
    die("cannot start the publisher thread");
  if (!opt.json) {
    /* A progress line a second on stderr until the publisher stops. */
    long long last_p = 0, last_d = 0;
    double last_t = mono_s();
    while (!atomic_load(&publisher_done)) {
      sleep_us(100000);
      double now = mono_s();
      if (now - last_t < 1.0)
        continue;
      long long p = atomic_load(&published), d = atomic_load(&delivered);
      fprintf(stderr, "pub %.0f/s  dlv %.0f/s  backlog %lld\n", (p - last_p) / (now - last_t),
              (d - last_d) / (now - last_t), atomic_load(&written) - d);
      last_p = p, last_d = d, last_t = now;
    }
  }
  pthread_join(pub, NULL);
  pthread_join(con, NULL);
  report();
  return con_result.delivered ? 0 : 1;
}
