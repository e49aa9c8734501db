// The open statistics page: reads /stats/appointments and draws it with plotly.js.
// The window and the service come from the form (and the page's own query string: the page
// can be linked to); the body's data-state says "ready" once both charts are drawn.
"use strict";

const MEASURES = ["booked", "cancelled", "noshow", "fulfilled"];
const DOSES = ["doses-delivered", "doses-reserved", "doses-administered"];
const NO_CODE = "unknown";

const day = (date) => date.toISOString().slice(0, 10);

function defaults() {
  const asked = new URLSearchParams(window.location.search);
  const today = new Date();
  const monthAgo = new Date(today.getTime() - 29 * 86400000);
  return {
    from: asked.get("from") || day(monthAgo),
    to: asked.get("to") || day(today),
    service: asked.get("service-type") || "",
  };
}

async function figures(groupBy, filters) {
  const query = new URLSearchParams({ from: filters.from, to: filters.to, "group-by": groupBy });
  if (filters.service) query.set("service-type", filters.service);
  const response = await fetch(`/stats/appointments?${query}`, {
    headers: { Accept: "application/json" },
  });
  const body = await response.json();
  if (!response.ok) {
    const issues = (body.issue || []).map((issue) => issue.diagnostics).join("; ");
    throw new Error(issues || `HTTP ${response.status}`);
  }
  return body;
}

// A published figure as a number to draw (a suppressed one, "< 10", draws as 0).
const height = (value) => (typeof value === "number" ? value : 0);
const shown = (group, measure) =>
  `${group[measure]}${(group.partial || []).includes(measure) ? "*" : ""}`;

function everyDay(from, to) {
  const days = [];
  for (let at = new Date(`${from}T00:00:00Z`); day(at) <= to; at.setUTCDate(at.getUTCDate() + 1)) {
    days.push(day(at));
  }
  return days;
}

function drawDepartments(report) {
  const names = report.groups.map((group) => group.department || NO_CODE);
  const traces = ["booked", "cancelled"].map((measure) => ({
    type: "bar",
    name: measure,
    x: names,
    y: report.groups.map((group) => height(group[measure])),
    text: report.groups.map((group) => shown(group, measure)),
    textposition: "outside",
  }));
  const layout = {
    barmode: "group",
    margin: { t: 24 },
    xaxis: { type: "category", title: { text: "department" } },
    yaxis: { title: { text: "appointments" }, rangemode: "tozero" },
  };
  return Plotly.newPlot("by-department", traces, layout, { displayModeBar: false });
}

function drawDays(report, filters) {
  const byDay = new Map(report.groups.map((group) => [group.day, group]));
  const days = everyDay(filters.from, filters.to);
  const traces = [...MEASURES, "doses-administered"].map((measure) => ({
    type: "scatter",
    mode: "lines+markers",
    name: measure,
    x: days,
    y: days.map((d) => height((byDay.get(d) || {})[measure] ?? 0)),
    text: days.map((d) => (byDay.has(d) ? shown(byDay.get(d), measure) : "0")),
  }));
  const layout = {
    margin: { t: 24 },
    xaxis: { type: "date", title: { text: "day" }, dtick: 86400000, tickformat: "%Y-%m-%d" },
    yaxis: { title: { text: "count" }, rangemode: "tozero" },
  };
  return Plotly.newPlot("by-day", traces, layout, { displayModeBar: false });
}

function fillTable(id, dimension, report) {
  const table = document.getElementById(id);
  const head = [dimension, ...MEASURES, ...DOSES];
  const rows = report.groups.map((group) => [
    group[dimension] || NO_CODE,
    ...[...MEASURES, ...DOSES].map((measure) => shown(group, measure)),
  ]);
  rows.push(["total", ...[...MEASURES, ...DOSES].map((measure) => shown(report.total, measure))]);
  table.replaceChildren();
  const header = table.createTHead().insertRow();
  for (const name of head) {
    const cell = document.createElement("th");
    cell.textContent = name;
    header.appendChild(cell);
  }
  const body = table.createTBody();
  for (const row of rows) {
    const line = body.insertRow();
    line.dataset.key = row[0];
    for (const value of row) line.insertCell().textContent = value;
  }
}

function fillServices(report, chosen) {
  const select = document.getElementById("service-type");
  const known = report.groups.map((group) => group["service-type"]).filter(Boolean);
  const codes = [...new Set([...known, ...(chosen ? [chosen] : [])])];
  select.replaceChildren(new Option("every service", ""));
  for (const code of codes) select.add(new Option(code, code, false, code === chosen));
}

async function show(filters) {
  const status = document.getElementById("status");
  document.body.dataset.state = "loading";
  status.textContent = "Loading…";
  try {
    const [departments, days, services] = await Promise.all([
      figures("department", filters),
      figures("day", filters),
      figures("service-type", { ...filters, service: "" }),
    ]);
    for (const node of document.querySelectorAll(".threshold")) {
      node.textContent = departments.threshold;
    }
    fillServices(services, filters.service);
    fillTable("department-table", "department", departments);
    fillTable("day-table", "day", days);
    await drawDepartments(departments);
    await drawDays(days, filters);
    status.textContent = `From ${departments.from} to ${departments.to}`;
    document.body.dataset.state = "ready";
  } catch (error) {
    status.textContent = `The figures could not be read: ${error.message}`;
    document.body.dataset.state = "error";
  }
}

function start() {
  const filters = defaults();
  const form = document.getElementById("filters");
  form.elements.from.value = filters.from;
  form.elements.to.value = filters.to;
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const chosen = {
      from: form.elements.from.value,
      to: form.elements.to.value,
      service: form.elements["service-type"].value,
    };
    const query = new URLSearchParams({ from: chosen.from, to: chosen.to });
    if (chosen.service) query.set("service-type", chosen.service);
    window.history.replaceState(null, "", `?${query}`);
    show(chosen);
  });
  show(filters);
}

start();
