// pydispatch dashboard: polls the dispatcher's JSON API every second and draws it.
// Plain DOM and SVG, no library: nothing to vendor, nothing fetched from elsewhere.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const HISTORY = 120; // samples kept for the chart (two minutes)
const state = { history: [], last: null, cpu: {}, workers: [], job: null };

function $(id) { return document.getElementById(id); }

function make(tag, attrs, ...children) {
  const svg = ["svg", "g", "rect", "text", "line", "path", "polyline", "defs", "marker", "title"].includes(tag);
  const node = svg ? document.createElementNS(SVG, tag) : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  for (const child of children) node.append(child instanceof Node ? child : String(child));
  return node;
}

async function getJSON(path) {
  const answer = await fetch(path, { cache: "no-store" });
  if (!answer.ok) throw new Error(`${path}: HTTP ${answer.status}`);
  return answer.json();
}

function number(n) {
  if (n === undefined || n === null) return "-";
  if (Math.abs(n) >= 1e6) return (n / 1e6).toFixed(2) + "M";
  if (Math.abs(n) >= 1e4) return (n / 1e3).toFixed(1) + "k";
  return Number.isInteger(n) ? String(n) : n.toFixed(1);
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function fillTable(table, rows) {
  const body = $(table).querySelector("tbody");
  body.replaceChildren(...rows.map((cells) => make("tr", {}, ...cells.map((c) => make("td", {}, c)))));
}

// ------------------------------------------------------------------------- overview

function renderOverview(overview, now) {
  const t = overview.tasks;
  const ended = t.finished + t.failed + t.cancelled;
  let rate = 0;
  if (state.last) {
    const seconds = (now - state.last.time) / 1000;
    if (seconds > 0) rate = Math.max(0, ended - state.last.ended) / seconds;
  }
  state.last = { time: now, ended };
  state.history.push({ rate, queued: t.queued });
  if (state.history.length > HISTORY) state.history.shift();
  $("endpoint").textContent = overview.endpoint;
  $("stat-workers").textContent = overview.workers;
  $("stat-slots").textContent = `${overview.slots_busy}/${overview.slots}`;
  $("stat-queued").textContent = number(t.queued);
  $("stat-running").textContent = number(t.running);
  $("stat-finished").textContent = number(t.finished);
  $("stat-failed").textContent = number(t.failed);
  $("stat-rate").textContent = number(rate);
  drawChart();
  // By the client's name (a bounded set of labels: see client_labels.py).
  fillTable("clients-table", (overview.clients || []).map((c) => [
    c.client, c.priority, ...["submitted", "queued", "running", "finished", "failed", "cancelled",
      "retried"].map((k) => number(c[k])),
  ]));
}

function drawChart() {
  const chart = $("chart");
  const width = 600, height = 160, pad = 14;
  const points = state.history;
  const line = (key, cls) => {
    const top = Math.max(1, ...points.map((p) => p[key]));
    const coords = points.map((p, i) => {
      const x = (i / (HISTORY - 1)) * width;
      const y = height - pad - (p[key] / top) * (height - 2 * pad);
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    });
    return [make("polyline", { class: cls, points: coords.join(" ") }), top];
  };
  const [rate, rateTop] = line("rate", "rate");
  const [queue, queueTop] = line("queued", "queue");
  chart.replaceChildren(rate, queue);
  // Scale labels in HTML: the chart stretches to the page's width, text in it would too.
  $("chart-rate-top").textContent = `top ${number(rateTop)} tasks/s`;
  $("chart-queue-top").textContent = `top ${number(queueTop)} queued`;
}

function zoneOf(name) {
  const worker = state.workers.find((w) => w.name === name);
  return worker ? worker.labels.zone || "" : "";
}

function renderWorkers(workers, now) {
  state.workers = workers;
  fillTable("workers-table", workers.map((w) => {
    const previous = state.cpu[w.name];
    let cpu = "-";
    if (previous && now > previous.time && w.cpu_seconds >= previous.cpu) {
      cpu = `${((100 * (w.cpu_seconds - previous.cpu)) / ((now - previous.time) / 1000)).toFixed(0)}%`;
    }
    state.cpu[w.name] = { time: now, cpu: w.cpu_seconds };
    const resources = Object.entries(w.resources)
      .map(([k, v]) => `${k} ${number(w.free_resources[k] ?? 0)}/${number(v)}`).join(", ");
    return [
      w.name, w.node, w.labels.zone || "", `${w.slots_used}/${w.slots}`,
      `${w.seconds_since_heartbeat.toFixed(1)} s ago`, cpu, w.rss_bytes ? bytes(w.rss_bytes) : "-",
      resources || "-", w.draining ? "draining" : "up",
    ];
  }));
}

function renderJobs(jobs) {
  fillTable("jobs-table", jobs.map((j) => [
    make("a", { href: `#/jobs/${encodeURIComponent(j.job_id)}`, class: "job-link" }, j.job_id),
    j.name, j.state, j.attempt, j.slices,
  ]));
}

// ------------------------------------------------------------------------------ job

function rates(job, now) {
  // Records/s per operator and back-pressure share per chain since the previous look.
  const m = job.metrics || {};
  const previous = state.job && state.job.id === job.job_id ? state.job : null;
  const seconds = previous ? (now - previous.time) / 1000 : 0;
  const per = (current, before) => {
    const out = {};
    for (const [k, v] of Object.entries(current || {})) {
      out[k] = seconds > 0 && before ? Math.max(0, v - (before[k] || 0)) / seconds : null;
    }
    return out;
  };
  // Back-pressure: the share of its subtasks' time a chain waited for credit downstream,
  // since the previous look (over the job's life on the first).
  const pressure = {};
  const subtasks = {};
  for (const chain of (job.graph || {}).chains || []) subtasks[chain.name] = chain.parallelism;
  for (const [chain, pressured] of Object.entries(m.backpressured_seconds || {})) {
    let dPressured = pressured, dSeconds = m.seconds || 0;
    if (previous && previous.pressured) {
      dPressured = pressured - (previous.pressured[chain] || 0);
      dSeconds = seconds;
    }
    const time = dSeconds * (subtasks[chain] || 1);
    pressure[chain] = time > 0 ? Math.max(0, dPressured) / time : 0;
  }
  const result = { in: per(m.records_in, previous && previous.in), out: per(m.records_out, previous && previous.out), pressure };
  state.job = {
    id: job.job_id, time: now, in: m.records_in, out: m.records_out,
    busy: m.busy_seconds, pressured: m.backpressured_seconds,
  };
  return result;
}

function pressureClass(share) {
  if (share > 0.5) return "bad";
  if (share > 0.1) return "warn";
  return "ok";
}

function drawGraph(graph, metrics, r) {
  const svg = $("job-graph");
  const boxW = 170, boxH = 46, gapX = 90, gapY = 16, pad = 24;
  const chains = graph.chains;
  const position = {};
  let tallest = 0;
  const children = [
    make("defs", {}, make("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto" },
      make("path", { d: "M0,0 L10,5 L0,10 z", fill: "#5a6275" }))),
  ];
  chains.forEach((chain, column) => {
    const x = pad + column * (boxW + gapX);
    const height = chain.operators.length * (boxH + gapY) + gapY + 18;
    tallest = Math.max(tallest, height);
    const share = r.pressure[chain.name] || 0;
    children.push(make("rect", {
      class: `chain ${pressureClass(share)}`, x: x - 10, y: pad - 8, width: boxW + 20, height, rx: 8,
      "data-chain": chain.name,
    }, make("title", {}, `${chain.name}: back-pressured ${(100 * share).toFixed(0)}% of its time`)));
    children.push(make("text", { x, y: pad + 6 }, `chain ${chain.id} · parallelism ${chain.parallelism}`));
    chain.operators.forEach((opId, row) => {
      const op = graph.operators.find((o) => o.id === opId);
      const y = pad + 16 + row * (boxH + gapY);
      position[opId] = { x, y };
      const rateIn = r.in[opId], rateOut = r.out[opId];
      const figures = `in ${number((metrics.records_in || {})[opId] ?? 0)} · out ${number((metrics.records_out || {})[opId] ?? 0)}`
        + (rateOut !== null && rateOut !== undefined ? ` · ${number(rateOut)}/s` : (rateIn ? ` · ${number(rateIn)}/s` : ""));
      children.push(make("g", {
        class: "operator", "data-name": op.name, "data-id": op.id,
        "data-records-in": (metrics.records_in || {})[opId] ?? 0,
        "data-records-out": (metrics.records_out || {})[opId] ?? 0,
        "data-bytes-in": (metrics.bytes_in || {})[opId] ?? 0,
        "data-bytes-out": (metrics.bytes_out || {})[opId] ?? 0,
      },
        make("rect", { x, y, width: boxW, height: boxH, rx: 4 }),
        make("text", { x: x + 8, y: y + 18 }, `${op.name} ×${op.parallelism}`),
        make("text", { x: x + 8, y: y + 36, class: "figures" }, figures)));
    });
  });
  for (const edge of graph.edges) {
    const a = position[edge.source], b = position[edge.target];
    if (!a || !b) continue;
    let d, lx, ly;
    if (edge.chained) {
      d = `M${a.x + boxW / 2},${a.y + boxH} L${b.x + boxW / 2},${b.y}`;
      lx = a.x + boxW / 2 + 6; ly = (a.y + boxH + b.y) / 2 + 4;
    } else {
      d = `M${a.x + boxW},${a.y + boxH / 2} L${b.x},${b.y + boxH / 2}`;
      lx = (a.x + boxW + b.x) / 2 - 30; ly = (a.y + b.y + boxH) / 2 - 6;
    }
    children.push(make("path", { class: "edge", d, "data-partitioning": edge.partitioning }));
    children.push(make("text", { class: "edge-label", x: lx, y: ly }, edge.chained ? "chained" : edge.partitioning));
  }
  svg.setAttribute("viewBox", `0 0 ${pad * 2 + chains.length * (boxW + gapX)} ${tallest + pad * 2}`);
  svg.style.height = `${tallest + pad * 2}px`;
  svg.replaceChildren(...children);
}

function renderJob(job, now) {
  $("job-title").textContent = `${job.name} (${job.job_id})`;
  const m = job.metrics || {};
  const summary = [`state ${job.state}`, `attempt ${job.attempt}`, `${job.slices} slice(s)`];
  if (m.restarts !== undefined) summary.push(`${m.restarts} restart(s)`);
  if (m.bytes_shuffled !== undefined) summary.push(`${bytes(m.bytes_shuffled)} shuffled`);
  const ck = m.checkpoints;
  if (ck) summary.push(`${ck.completed} checkpoint(s), last ${ck.last_duration.toFixed(2)} s, ${bytes(ck.last_size)}`);
  if (job.error) summary.push(job.error);
  $("job-summary").textContent = summary.join(" · ");
  const graph = job.graph;
  if (!graph) {
    $("job-graph").replaceChildren();
    fillTable("operators-table", []);
  } else {
    const r = rates(job, now);
    drawGraph(graph, m, r);
    fillTable("operators-table", graph.operators.map((op) => [
      op.name, op.chain, op.parallelism, number((m.records_in || {})[op.id] ?? 0),
      number((m.records_out || {})[op.id] ?? 0), number(r.in[op.id]), number(r.out[op.id]),
      bytes((m.bytes_in || {})[op.id] ?? 0), bytes((m.bytes_out || {})[op.id] ?? 0),
      op.id in (m.watermark_lag || {}) ? number(m.watermark_lag[op.id]) : "-",
    ]));
  }
  const placement = job.placement || {};
  const where = placement.ran_on || placement.workers || [];
  const rows = [];
  for (let i = 0; i < job.slices; i++) {
    const worker = where[i] || "placed by the dispatcher";
    rows.push([i, worker, zoneOf(where[i] || "")]);
  }
  fillTable("slices-table", rows);
}

// --------------------------------------------------------------------------- loop

function showPage(name) {
  $("overview-page").hidden = name !== "overview";
  $("job-page").hidden = name !== "job";
}

async function refresh() {
  const now = Date.now();
  try {
    const [overview, workers, jobs] = await Promise.all([
      getJSON("/api/overview"), getJSON("/api/workers"), getJSON("/api/jobs"),
    ]);
    renderOverview(overview, now);
    renderWorkers(workers, now);
    renderJobs(jobs);
    const match = (location.hash || "").match(/^#\/jobs\/(.+)$/);
    if (match && jobs.some((j) => j.job_id === decodeURIComponent(match[1]))) {
      renderJob(await getJSON(`/api/jobs/${match[1]}`), now);
      showPage("job");
    } else {
      showPage("overview");
    }
    $("status").textContent = `updated ${new Date(now).toLocaleTimeString()}`;
  } catch (error) {
    $("status").textContent = `cannot reach the dispatcher: ${error.message}`;
  }
}

window.addEventListener("hashchange", refresh);
refresh();
setInterval(refresh, 1000);
