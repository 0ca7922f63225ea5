// Overview: listeners, connections, live message rates per protocol, memory, disk, alarms.
import { LineChart } from "./chart.js";
import { Rates, api, card, every, fmtBytes, fmtNum, h, replace, table } from "./app.js";

export async function overview(view) {
  const cards = h("div", { class: "cards" });
  const inChart = new LineChart("Messages in (published, produced)", ["AMQP", "Kafka"]);
  const outChart = new LineChart("Messages out (delivered, fetched)", ["AMQP", "Kafka"]);
  const listeners = h("div");
  replace(view, h("h1", {}, "Overview"), cards, h("h2", {}, "Message rates"),
    h("div", { class: "charts" }, inChart.el, outChart.el),
    h("h2", {}, "Listeners"), listeners);
  const rates = new Rates();
  let first = true;
  every(2000, async () => {
    const [health, kafka, amqp, nodes] = await Promise.all([
      api("/health").catch((err) => err.body), api("/kafka/v1"), api("/api/overview"),
      api("/api/nodes"),
    ]);
    const node = nodes[0] || {};
    const msgs = kafka.messages || {};
    const sample = (proto, dir) => rates.rate(`${proto}.${dir}`, (msgs[proto] || {})[dir] || 0);
    const values = [sample("amqp", "in"), sample("kafka", "in"), sample("amqp", "out"),
                    sample("kafka", "out")];
    if (!first) {
      inChart.push(values.slice(0, 2));
      outChart.push(values.slice(2));
    }
    first = false;
    const conns = kafka.connections || {};
    const totals = amqp.object_totals || {};
    const alarms = [node.mem_alarm && "memory", node.disk_free_alarm && "disk"].filter(Boolean);
    replace(cards,
      card("AMQP connections", fmtNum(conns.amqp || 0)),
      card("Kafka connections", fmtNum(conns.kafka || 0)),
      card("Queues", fmtNum(totals.queues)),
      card("Messages in queues", fmtNum((amqp.queue_totals || {}).messages)),
      card("Topics / partitions", `${fmtNum(kafka.topics)} / ${fmtNum(kafka.partitions)}`),
      card("Consumer groups", fmtNum(kafka.groups)),
      card("Memory", `${fmtBytes(node.mem_used)} of ${fmtBytes(node.mem_limit)}`),
      card("Disk free", `${fmtBytes(node.disk_free)} (limit ${fmtBytes(node.disk_free_limit)})`),
      card("Alarms", alarms.length ? alarms.join(", ") : "none", alarms.length ? "bad" : "ok"),
      card("Version", (health && health.version) || "–"));
    const rows = Object.entries((health && health.listeners) || {})
      .map(([name, l]) => ({ name, ...l }));
    replace(listeners, table([
      { label: "Listener", value: (r) => r.name },
      { label: "Address", value: (r) => h("span", { class: "mono" }, r.address) },
      { label: "State", value: (r) => h("span", { class: r.state === "listening" ? "ok" : "bad" },
                                         r.state) },
    ], rows));
  });
}
