// Kafka pages: topics, one topic (partitions, configs, message browser, produce),
// consumer groups, one group (members, lag per partition, offset reset). They read
// the Kafka HTTP API under /kafka/v1.
import { barChart } from "./chart.js";
import {
  Rates, api, card, enc, every, fmtBytes, fmtNum, fmtTime, h, notice, replace, table,
} from "./app.js";

function field(label, input) {
  return h("label", {}, label, input);
}

function form(onsubmit, ...children) {
  const out = h("div");
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

const shown = (value, encoding) => {
  if (value === null || value === undefined) return h("span", { class: "muted" }, "null");
  if (encoding === "json") return h("pre", {}, JSON.stringify(value, null, 2));
  if (encoding === "base64") return h("pre", { title: "base64" }, `(base64) ${value}`);
  return h("pre", {}, value);
};

export async function topics(view) {
  const list = h("div");
  const name = h("input", { required: true, name: "topic-name" });
  const partitions = h("input", { type: "number", value: 1, min: 1, max: 10000, size: 4 });
  const retention = h("input", { placeholder: "default", size: 10 });
  replace(view, h("h1", {}, "Topics"), list, h("h2", {}, "Create a topic"),
    form(async () => {
      const configs = retention.value ? { "retention.ms": retention.value } : {};
      await api("/kafka/v1/topics", { method: "POST",
        body: { name: name.value, partitions: Number(partitions.value), configs } });
      return `Topic ${name.value} created.`;
    }, field("Name", name), field("Partitions", partitions), field("retention.ms", retention),
    h("button", { type: "submit" }, "Create")));
  const rates = new Rates();
  every(5000, async () => {
    const data = await api("/kafka/v1/topics");
    replace(list, table([
      { label: "Name", value: (t) => h("a", { href: `#/topics/${enc(t.name)}` }, t.name) },
      { label: "Partitions", num: true, value: (t) => fmtNum(t.partitions) },
      { label: "Messages", num: true, value: (t) => fmtNum(t.messages) },
      { label: "Size", num: true, value: (t) => fmtBytes(t.size_bytes) },
      { label: "In /s", num: true, value: (t) => fmtNum(rates.rate(t.name, t.end_offsets)) },
      { label: "Overrides", value: (t) => Object.entries(t.configs).map(([k, v]) => `${k}=${v}`).join(", ") || "–" },
    ], data, "No topics."));
  });
}

export async function topic(view, name) {
  const base = `/kafka/v1/topics/${enc(name)}`;
  const first = await api(base);
  const count = first.partitions.length;
  const info = h("div", { class: "cards" });
  const parts = h("div");
  const configs = h("div");
  const records = h("div", { id: "records" });
  const partitionOptions = () => [h("option", { value: "" }, "all"),
    ...Array.from({ length: count }, (_, i) => h("option", { value: i }, String(i)))];
  const partition = h("select", { name: "partition" }, partitionOptions());
  const mode = h("select", { name: "mode" }, ["last", "offset", "timestamp"].map((m) => h("option", {}, m)));
  const from = h("input", { name: "from", value: 20, size: 14, "aria-label": "position" });
  const limit = h("input", { type: "number", value: 50, min: 1, max: 1000, size: 4 });
  const format = h("select", {}, ["auto", "text", "json", "base64"].map((f) => h("option", {}, f)));
  const filter = h("input", { type: "search", name: "filter", placeholder: "key or value contains" });
  let lastRead = [];
  const render = () => {
    const needle = filter.value.toLowerCase();
    const rows = lastRead.filter((r) => !needle
      || JSON.stringify([r.key, r.value, r.headers]).toLowerCase().includes(needle));
    replace(records, table([
      { label: "Partition", num: true, value: (r) => r.partition },
      { label: "Offset", num: true, value: (r) => r.offset },
      { label: "Timestamp", value: (r) => fmtTime(r.timestamp) },
      { label: "Key", value: (r) => shown(r.key, r.key_encoding) },
      { label: "Value", value: (r) => shown(r.value, r.value_encoding) },
      { label: "Headers", value: (r) => r.headers.map((x) => `${x.key}=${x.value}`).join(", ") },
    ], rows, "No records."));
  };
  const browse = async () => {
    const q = new URLSearchParams({ limit: limit.value, format: format.value });
    if (partition.value !== "") q.set("partition", partition.value);
    let position = from.value.trim();
    if (mode.value === "timestamp" && position && !/^\d+$/.test(position)) {
      position = String(Date.parse(position));
    }
    if (position) q.set(mode.value, position);
    const got = await api(`${base}/records?${q}`);
    lastRead = got.records;
    render();
    if (got.unreadable) records.prepend(notice(`${got.unreadable.length} batch(es) could not be read`, true));
  };
  filter.addEventListener("input", render);
  mode.addEventListener("change", () => {
    from.value = { last: "20", offset: "0", timestamp: new Date(Date.now() - 3600e3).toISOString() }[mode.value];
  });
  const pPartition = h("select", { name: "produce-partition" }, [h("option", { value: "" }, "by key"),
    ...Array.from({ length: count }, (_, i) => h("option", { value: i }, String(i)))]);
  const pKey = h("input", { name: "key" });
  const pValue = h("textarea", { name: "value", "aria-label": "value" });
  const pHeaders = h("input", { name: "headers", placeholder: '{"key": "value"}', size: 24 });
  replace(view,
    h("h1", {}, `Topic ${name}`), info,
    h("h2", {}, "Messages"),
    form(browse, field("Partition", partition), field("From", mode), field("Position", from),
      field("Limit", limit), field("Format", format), h("button", { type: "submit" }, "Read"),
      field("Filter", filter)),
    records,
    h("h2", {}, "Produce a record"),
    form(async () => {
      let headers = {};
      if (pHeaders.value.trim()) {
        try { headers = JSON.parse(pHeaders.value); } catch { throw new Error("headers must be a JSON object"); }
      }
      const body = { key: pKey.value || null, value: pValue.value, value_encoding: "text", headers };
      if (pPartition.value !== "") body.partition = Number(pPartition.value);
      const r = await api(`${base}/records`, { method: "POST", body });
      return `Produced to partition ${r.partition} at offset ${r.offset}.`;
    }, field("Partition", pPartition), field("Key", pKey), field("Value", pValue),
    field("Headers (JSON)", pHeaders), h("button", { type: "submit" }, "Produce")),
    h("h2", {}, "Partitions"), parts, h("h2", {}, "Configs"), configs,
    h("h2", {}, "Danger zone"),
    h("button", { class: "danger", onclick: async () => {
      if (!confirm(`Delete topic ${name} and all its records?`)) return;
      await api(base, { method: "DELETE" });
      location.hash = "#/topics";
    } }, "Delete topic"));
  browse().catch((err) => replace(records, notice(String(err.message || err), true)));
  every(5000, async () => {
    const t = await api(base);
    replace(info, card("Partitions", fmtNum(t.partitions.length)), card("Messages", fmtNum(t.messages)),
      card("Size", fmtBytes(t.size_bytes)), card("Topic id", h("span", { class: "mono" }, t.id)));
    replace(parts, table([
      { label: "Partition", num: true, value: (p) => p.partition },
      { label: "Leader", num: true, value: (p) => p.leader },
      { label: "Start offset", num: true, value: (p) => fmtNum(p.log_start_offset) },
      { label: "High watermark", num: true, value: (p) => fmtNum(p.high_watermark) },
      { label: "Messages", num: true, value: (p) => fmtNum(p.messages) },
      { label: "Size", num: true, value: (p) => fmtBytes(p.size_bytes) },
      { label: "Segments", num: true, value: (p) => fmtNum(p.segments) },
    ], t.partitions));
    replace(configs, table([
      { label: "Config", value: (c) => h("span", { class: "mono" }, c.name) },
      { label: "Value", value: (c) => h("span", { class: "mono" }, c.value) },
      { label: "Source", value: (c) => c.source },
    ], Object.entries(t.configs).map(([k, v]) => ({ name: k, ...v }))));
  });
}

export async function groups(view) {
  const list = h("div");
  replace(view, h("h1", {}, "Consumer groups"), list);
  every(3000, async () => {
    const data = await api("/kafka/v1/groups");
    replace(list, table([
      { label: "Group", value: (g) => h("a", { href: `#/groups/${enc(g.group_id)}` }, g.group_id) },
      { label: "State", value: (g) => g.state },
      { label: "Protocol", value: (g) => g.protocol || "–" },
      { label: "Members", num: true, value: (g) => fmtNum(g.members) },
      { label: "Topics", value: (g) => g.topics.join(", ") || "–" },
      { label: "Lag", num: true, value: (g) => fmtNum(g.lag) },
    ], data, "No consumer groups."));
  });
}

export async function group(view, id) {
  const base = `/kafka/v1/groups/${enc(id)}`;
  const info = h("div", { class: "cards" });
  const chart = h("div", { id: "lag-chart" });
  const offsets = h("div");
  const members = h("div");
  const to = h("select", { name: "to" }, ["earliest", "latest", "timestamp", "offset"].map((t) => h("option", {}, t)));
  const value = h("input", { name: "value", placeholder: "offset or ISO time / ms", size: 18 });
  const topicName = h("input", { name: "topic", placeholder: "every committed topic", size: 16 });
  replace(view, h("h1", {}, `Consumer group ${id}`), info,
    h("h2", {}, "Lag per partition"), chart, offsets,
    h("h2", {}, "Members"), members,
    h("h2", {}, "Reset offsets"),
    h("p", { class: "muted" }, "Kafka resets a group's offsets only while it has no members."),
    form(async () => {
      const body = { to: to.value };
      if (topicName.value) body.topic = topicName.value;
      if (to.value === "offset") body.offset = Number(value.value);
      if (to.value === "timestamp") {
        body.timestamp = /^\d+$/.test(value.value) ? Number(value.value) : Date.parse(value.value);
      }
      const r = await api(`${base}/offsets/reset`, { method: "POST", body });
      return `Offsets set: ${r.offsets.map((o) => `${o.topic}[${o.partition}]=${o.offset}`).join(", ")}`;
    }, field("To", to), field("Offset / time", value), field("Topic", topicName),
    h("button", { type: "submit" }, "Reset")));
  every(3000, async () => {
    const g = await api(base);
    replace(info, card("State", g.state), card("Protocol", g.protocol || "–"),
      card("Members", fmtNum(g.members.length)), card("Generation", fmtNum(g.generation)),
      card("Total lag", fmtNum(g.lag)));
    replace(chart, g.offsets.length
      ? barChart("Lag (messages behind the high watermark)",
        g.offsets.map((o) => ({ label: `${o.topic} [${o.partition}]`, value: o.lag })))
      : h("p", { class: "muted" }, "No committed offsets."));
    replace(offsets, table([
      { label: "Topic", value: (o) => h("a", { href: `#/topics/${enc(o.topic)}` }, o.topic) },
      { label: "Partition", num: true, value: (o) => o.partition },
      { label: "Committed", num: true, value: (o) => fmtNum(o.committed) },
      { label: "High watermark", num: true, value: (o) => fmtNum(o.high_watermark) },
      { label: "Lag", num: true, value: (o) => fmtNum(o.lag) },
      { label: "Member", value: (o) => o.member_id || "–" },
    ], g.offsets, ""));
    replace(members, table([
      { label: "Member", value: (m) => h("span", { class: "mono" }, m.member_id) },
      { label: "Client", value: (m) => m.client_id },
      { label: "Host", value: (m) => m.client_host },
      { label: "Subscription", value: (m) => m.subscription.join(", ") || "–" },
      { label: "Assignment", value: (m) => m.assignment.map((a) => `${a.topic} [${a.partitions.join(", ")}]`).join("; ") || "–" },
    ], g.members, "No members."));
  });
}
