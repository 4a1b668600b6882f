// @ts-check
// The operator's activity chart: attempts finished per interval over the last hour or
// day, stacked by outcome, drawn as SVG from GET /admin/activity. A table of the same
// figures sits behind a toggle for screen readers and for exact numbers.

import { api, h, loading } from "./lib.js";

const SVG_NS = "http://www.w3.org/2000/svg";
/** Outcome, legend, colour: the stack's order from the bottom. */
const SERIES = [
  ["synced", "Synced", "#116329"],
  ["unchanged", "Unchanged", "#8c959f"],
  ["retrying", "Failed, retrying", "#bf8700"],
  ["failed", "Failed", "#a40e26"],
  ["other", "Interrupted or lost", "#6639ba"],
];

/** @param {string} tag @param {Record<string, string | number>} attrs */
function svg(tag, attrs) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

/** The chart section, showing `span` first. @param {"hour" | "day"} span */
export function activityChart(span = "hour") {
  const section = h("section", { "aria-label": "Activity", "data-testid": "activity" });
  const body = h("div", {}, loading());
  /** @param {"hour" | "day"} w */
  const pick = (w) => h("button", {
    type: "button", text: w === "hour" ? "Last hour" : "Last day", "aria-pressed": String(w === span),
    onclick: () => { span = w; load(); },
  });
  const load = async () => {
    try {
      const activity = await api("GET", `/admin/activity?window=${span}`);
      body.replaceChildren(draw(activity));
    } catch (err) {
      body.replaceChildren(h("p", { class: "form-error", text: err.message }));
    }
    controls.replaceChildren(pick("hour"), pick("day"));
  };
  const controls = h("div", { class: "sync" });
  section.append(h("h2", { text: "Throughput and failures" }), controls, body);
  load();
  return section;
}

/** A legend's colour square (SVG: the CSP allows no inline style). @param {string} colour */
function swatch(colour) {
  const box = svg("svg", { width: 12, height: 12, "aria-hidden": "true" });
  box.append(svg("rect", { width: 12, height: 12, fill: colour }));
  return /** @type {any} */ (box);
}

/** @param {{ window: string, bucket_seconds: number, buckets: any[] }} activity */
function draw(activity) {
  const { buckets } = activity;
  const totals = Object.fromEntries(SERIES.map(([k]) => [k, buckets.reduce((n, b) => n + b[k], 0)]));
  const peak = Math.max(1, ...buckets.map((b) => SERIES.reduce((n, [k]) => n + b[k], 0)));
  const width = 600;
  const height = 160;
  const bar = width / buckets.length;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height + 18}`, class: "chart", role: "img" });
  const summary = SERIES.map(([k, label]) => `${totals[k]} ${label.toLowerCase()}`).join(", ");
  chart.setAttribute("aria-label", `Attempts over the last ${activity.window}: ${summary}; at most ${peak} in one interval`);
  buckets.forEach((b, i) => {
    let y = height;
    for (const [k, label, colour] of SERIES) {
      if (!b[k]) continue;
      const tall = (b[k] / peak) * height;
      y -= tall;
      const rect = svg("rect", { x: i * bar + 0.5, y, width: Math.max(1, bar - 1), height: tall, fill: colour });
      const title = svg("title", {});
      title.textContent = `${new Date(b.start).toLocaleTimeString()}: ${b[k]} ${label.toLowerCase()}`;
      rect.append(title);
      chart.append(rect);
    }
  });
  chart.append(svg("line", { x1: 0, y1: height, x2: width, y2: height, stroke: "#57606a" }));
  const axis = (/** @type {number} */ x, /** @type {string} */ anchor, /** @type {string} */ text) => {
    const t = svg("text", { x, y: height + 14, "font-size": 11, "text-anchor": anchor, fill: "#57606a" });
    t.textContent = text;
    return t;
  };
  chart.append(axis(0, "start", activity.window === "hour" ? "60 min ago" : "24 h ago"), axis(width, "end", "now"),
    axis(width / 2, "middle", `peak ${peak} per ${activity.bucket_seconds / 60} min`));
  const legend = h("ul", { class: "legend" }, ...SERIES.map(([k, label, colour]) =>
    h("li", { "data-testid": `total-${k}` }, swatch(colour), `${label}: ${totals[k]}`)));
  const table = h("details", {}, h("summary", { text: "Figures per interval" }),
    h("div", { class: "table-wrap" }, h("table", { class: "stack" },
      h("thead", {}, h("tr", {}, h("th", { scope: "col", text: "From" }), ...SERIES.map(([, label]) => h("th", { scope: "col", text: label })))),
      h("tbody", {}, ...buckets.filter((b) => SERIES.some(([k]) => b[k])).map((b) => h("tr", {},
        h("td", { text: new Date(b.start).toLocaleTimeString(), "data-label": "From" }),
        ...SERIES.map(([k, label]) => h("td", { text: String(b[k]), "data-label": label }))))))));
  return h("div", {}, /** @type {any} */ (chart), legend, table);
}
