// AMQP pages: queues, one queue (peek, get, publish, purge, bindings), exchanges and
// bindings, connections and channels. They read RabbitMQ's management API under /api.
import {
  api, card, enc, every, fmtBytes, fmtNum, fmtTime, h, notice, replace, table,
} from "./app.js";

const rate = (stats, name) => {
  const d = stats && stats[`${name}_details`];
  return d ? fmtNum(d.rate) : "0";
};
const queueLink = (q) => h("a", { href: `#/queues/${enc(q.vhost)}/${enc(q.name)}` }, q.name);

function field(label, input) {
  return h("label", {}, label, input);
}

function form(onsubmit, ...children) {
  const out = h("div", { class: "notice-slot" });
  const el = h("form", {
    class: "inline",
    onsubmit: async (event) => {
      event.preventDefault();
      try {
        const message = await onsubmit();
        replace(out, message ? notice(message) : null);
      } catch (err) {
        replace(out, notice(String(err.message || err), true));
      }
    },
  }, children);
  return h("div", {}, el, out);
}

export async function queues(view) {
  const filter = h("input", { type: "search", placeholder: "filter by name", "aria-label": "filter" });
  const body = h("div");
  const pager = h("div", { class: "pager" });
  let page = 1;
  const vhost = h("input", { value: "/", size: 6 });
  const name = h("input", { required: true, name: "queue-name" });
  const durable = h("input", { type: "checkbox", checked: true });
  const type = h("select", {}, ["classic", "quorum", "stream"].map((t) => h("option", {}, t)));
  replace(view, h("h1", {}, "Queues"), h("div", { class: "toolbar" }, filter), body, pager,
    h("h2", {}, "Add a queue"),
    form(async () => {
      await api(`/api/queues/${enc(vhost.value)}/${enc(name.value)}`, {
        method: "PUT",
        body: { durable: durable.checked, auto_delete: false,
                arguments: type.value === "classic" ? {} : { "x-queue-type": type.value } },
      });
      return `Queue ${name.value} declared.`;
    }, field("Vhost", vhost), field("Name", name), field("Durable", durable), field("Type", type),
    h("button", { type: "submit" }, "Add queue")));
  let refresh = async () => {
    const q = new URLSearchParams({ page, page_size: 100, name: filter.value,
                                    sort: "name", pagination: "true" });
    const data = await api(`/api/queues?${q}`);
    replace(body, table([
      { label: "Vhost", value: (r) => r.vhost },
      { label: "Name", value: queueLink },
      { label: "Type", value: (r) => r.type },
      { label: "State", value: (r) => r.state },
      { label: "Ready", num: true, value: (r) => fmtNum(r.messages_ready) },
      { label: "Unacked", num: true, value: (r) => fmtNum(r.messages_unacknowledged) },
      { label: "Total", num: true, value: (r) => fmtNum(r.messages) },
      { label: "Consumers", num: true, value: (r) => fmtNum(r.consumers) },
      { label: "In /s", num: true, value: (r) => rate(r.message_stats, "publish") },
      { label: "Out /s", num: true, value: (r) => rate(r.message_stats, "deliver_get") },
    ], data.items, "No queues."));
    replace(pager,
      h("button", { class: "secondary", disabled: page <= 1, onclick: () => { page -= 1; refresh(); } }, "‹"),
      `page ${data.page} of ${Math.max(1, data.page_count)} (${fmtNum(data.filtered_count)} queues)`,
      h("button", { class: "secondary", disabled: page >= data.page_count,
                    onclick: () => { page += 1; refresh(); } }, "›"));
  };
  filter.addEventListener("input", () => { page = 1; refresh(); });
  every(5000, () => refresh());
}

function messageView(m) {
  const props = Object.entries(m.properties || {});
  return h("div", { class: "message" },
    h("div", { class: "muted" },
      `exchange ${m.exchange || "(default)"} · routing key ${m.routing_key}`,
      m.redelivered ? " · redelivered" : "",
      m.offset !== undefined ? ` · offset ${m.offset} · ${fmtTime(m.timestamp)}` : ""),
    props.length ? h("div", { class: "mono" }, props.map(([k, v]) => `${k}: ${JSON.stringify(v)}`).join("  ")) : null,
    h("pre", { class: "payload" }, m.payload_encoding === "base64" || m.value_encoding === "base64"
      ? `(base64) ${m.payload ?? m.value}`
      : (typeof (m.payload ?? m.value) === "string" ? (m.payload ?? m.value)
        : JSON.stringify(m.value, null, 2))));
}

export async function queue(view, vhost, name) {
  const path = `/api/queues/${enc(vhost)}/${enc(name)}`;
  const info = h("div", { class: "cards" });
  const bindings = h("div");
  const messages = h("div", { id: "messages" });
  const detail = await api(path);
  const stream = detail.type === "stream";
  const count = h("input", { type: "number", value: 5, min: 1, max: 500, size: 4 });
  const payload = h("textarea", { name: "payload", "aria-label": "payload" });
  const headers = h("input", { name: "headers", placeholder: '{"key": "value"}', size: 24 });
  const persistent = h("input", { type: "checkbox", checked: true });
  const take = async (ackmode) => {
    const got = await api(`${path}/get`, { method: "POST",
      body: { count: Number(count.value), ackmode, encoding: "auto", truncate: 50000 } });
    replace(messages, got.length ? got.map(messageView) : h("p", { class: "muted" }, "The queue is empty."));
  };
  const readStream = async () => {
    const got = await api(`/kafka/v1/streams/${enc(vhost)}/${enc(name)}/records?last=${Number(count.value)}`);
    replace(messages, got.records.length ? got.records.map(messageView)
      : h("p", { class: "muted" }, "The stream is empty."));
  };
  replace(view,
    h("h1", {}, `Queue ${name}`, h("span", { class: "muted" }, ` in vhost ${vhost}`)), info,
    h("h2", {}, "Messages"),
    h("div", { class: "toolbar" }, field("Count", count),
      stream ? h("button", { onclick: () => readStream().catch(showError) }, "Read the last N")
        : [h("button", { onclick: () => take("ack_requeue_true").catch(showError) }, "Peek"),
           h("button", { class: "secondary", onclick: () => take("ack_requeue_false").catch(showError) }, "Get (remove)"),
           h("button", { class: "danger", onclick: () => api(`${path}/contents`, { method: "DELETE" })
             .then(() => replace(messages, notice("Purged."))).catch(showError) }, "Purge")]),
    messages,
    h("h2", {}, "Publish a message"),
    form(async () => {
      let parsed = {};
      if (headers.value.trim()) {
        try { parsed = JSON.parse(headers.value); } catch { throw new Error("headers must be a JSON object"); }
      }
      const r = await api(`/api/exchanges/${enc(vhost)}/amq.default/publish`, { method: "POST",
        body: { routing_key: name, payload: payload.value, payload_encoding: "string",
                properties: { delivery_mode: persistent.checked ? 2 : 1, headers: parsed } } });
      return r.routed ? "Published." : "Not routed.";
    }, field("Payload", payload), field("Headers (JSON)", headers),
    field("Persistent", persistent), h("button", { type: "submit" }, "Publish")),
    h("h2", {}, "Bindings"), bindings);
  function showError(err) { replace(messages, notice(String(err.message || err), true)); }
  every(5000, async () => {
    const [q, b] = await Promise.all([api(path), api(`${path}/bindings`)]);
    replace(info,
      card("Type", q.type), card("State", q.state),
      card("Ready", fmtNum(q.messages_ready)), card("Unacked", fmtNum(q.messages_unacknowledged)),
      card("Total", fmtNum(q.messages)), card("Consumers", fmtNum(q.consumers)),
      card("Durable", q.durable ? "yes" : "no"), card("Memory", fmtBytes(q.memory)),
      card("Arguments", JSON.stringify(q.arguments || {})));
    replace(bindings, table([
      { label: "From exchange", value: (r) => r.source || "(AMQP default)" },
      { label: "Routing key", value: (r) => h("span", { class: "mono" }, r.routing_key) },
      { label: "Arguments", value: (r) => JSON.stringify(r.arguments || {}) },
    ], b, "No bindings."));
  });
}

export async function exchanges(view) {
  const list = h("div");
  const binds = h("div");
  replace(view, h("h1", {}, "Exchanges"), list, h("h2", {}, "Bindings"), binds);
  every(5000, async () => {
    const [ex, b] = await Promise.all([api("/api/exchanges"), api("/api/bindings")]);
    replace(list, table([
      { label: "Vhost", value: (r) => r.vhost },
      { label: "Name", value: (r) => r.name || "(AMQP default)" },
      { label: "Type", value: (r) => r.type },
      { label: "Durable", value: (r) => (r.durable ? "yes" : "no") },
      { label: "Auto-delete", value: (r) => (r.auto_delete ? "yes" : "no") },
      { label: "Internal", value: (r) => (r.internal ? "yes" : "no") },
      { label: "Arguments", value: (r) => JSON.stringify(r.arguments || {}) },
      { label: "In /s", num: true, value: (r) => rate(r.message_stats, "publish_in") },
    ], ex));
    replace(binds, table([
      { label: "Vhost", value: (r) => r.vhost },
      { label: "Source", value: (r) => r.source || "(AMQP default)" },
      { label: "Destination", value: (r) => (r.destination_type === "queue"
        ? queueLink({ vhost: r.vhost, name: r.destination }) : `${r.destination} (exchange)`) },
      { label: "Routing key", value: (r) => h("span", { class: "mono" }, r.routing_key) },
      { label: "Arguments", value: (r) => JSON.stringify(r.arguments || {}) },
    ], b, "No bindings."));
  });
}

export async function connections(view) {
  const summary = h("div", { class: "cards" });
  const conns = h("div");
  const chans = h("div");
  replace(view, h("h1", {}, "Connections and channels"), summary,
    h("h2", {}, "AMQP connections"), conns, h("h2", {}, "Channels"), chans);
  every(5000, async () => {
    const [c, ch, k] = await Promise.all([api("/api/connections"), api("/api/channels"),
                                          api("/kafka/v1")]);
    const counts = k.connections || {};
    replace(summary, card("AMQP connections", fmtNum(counts.amqp || 0)),
      card("Kafka connections", fmtNum(counts.kafka || 0)), card("Channels", fmtNum(ch.length)));
    replace(conns, table([
      { label: "Client", value: (r) => (r.client_properties || {}).connection_name
        || (r.client_properties || {}).product || "–" },
      { label: "Protocol", value: (r) => r.protocol },
      { label: "Address", value: (r) => h("span", { class: "mono" }, `${r.peer_host}:${r.peer_port}`) },
      { label: "User", value: (r) => r.user },
      { label: "Vhost", value: (r) => r.vhost },
      { label: "State", value: (r) => r.state },
      { label: "Channels", num: true, value: (r) => fmtNum(r.channels) },
      { label: "Connected", value: (r) => fmtTime(r.connected_at) },
    ], c, "No AMQP connections."));
    replace(chans, table([
      { label: "Channel", value: (r) => r.name },
      { label: "User", value: (r) => r.user },
      { label: "Vhost", value: (r) => r.vhost },
      { label: "Prefetch", num: true, value: (r) => fmtNum(r.prefetch_count) },
      { label: "Unacked", num: true, value: (r) => fmtNum(r.messages_unacknowledged) },
      { label: "Consumers", num: true, value: (r) => fmtNum(r.consumer_count) },
      { label: "Mode", value: (r) => [r.confirm && "confirm", r.transactional && "tx"].filter(Boolean).join(", ") || "–" },
    ], ch, "No channels."));
  });
}
