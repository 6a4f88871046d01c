// Yugong console: dashboards — the editor (compose widgets, reorder, save through the console
// route) and the dashboard view (charts from the history API, values from the latest-values
// API, the alarm list from the alarm API, refreshed every few seconds).
"use strict";

(function () {
  const CHART_REFRESH_MS = 30000;
  // What each kind can show, as registry value kinds (mirrors the service's checks).
  const CHARTABLE = ["number", "integer", "bool", "enum", "date"];
  const ACCEPTS = {
    trend: CHARTABLE,
    state_timeline: CHARTABLE,
    gauge: ["number", "integer"],
    value: null,
    table: null,
    alarms: [],
  };
  const MULTI_PROPERTY = ["trend", "table"];

  async function getJSON(url) {
    const response = await fetch(url, { credentials: "same-origin" });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.detail || response.statusText);
    return body;
  }

  function selected(select) {
    return Array.from(select.selectedOptions).map((o) => o.value).filter(Boolean);
  }

  // The editor ------------------------------------------------------------------------------

  function editor(form) {
    const devices = JSON.parse(form.dataset.devices || "[]");
    const byId = Object.fromEntries(devices.map((d) => [String(d.id), d]));
    const hidden = document.getElementById("dash-widgets-json");
    const list = document.getElementById("dash-widgets");
    const empty = document.getElementById("dash-widgets-empty");
    const item = document.getElementById("dash-item");
    const kind = document.getElementById("dash-kind");
    const device = document.getElementById("dash-device");
    const property = document.getElementById("dash-property");
    const error = document.getElementById("dash-add-error");
    let widgets = JSON.parse(hidden.value || "[]");
    const anyOption = new Option(device.dataset.any, "");

    function kindLabel(k) {
      const option = Array.from(kind.options).find((o) => o.value === k);
      return option ? option.textContent : k;
    }

    function deviceName(id) {
      return byId[String(id)] ? byId[String(id)].name : `#${id}`;
    }

    function summary(w) {
      const parts = [kindLabel(w.kind)];
      const ids = w.devices || (w.device !== undefined ? [w.device] : []);
      if (ids.length) parts.push(ids.map(deviceName).join(", "));
      const props = w.properties || (w.property ? [w.property] : []);
      if (props.length) parts.push(props.join(", "));
      if (w.range) parts.push(w.range);
      if (w.title) parts.push(`“${w.title}”`);
      return parts.join(" · ");
    }

    function draw() {
      list.replaceChildren();
      widgets.forEach((w, i) => {
        const li = item.content.firstElementChild.cloneNode(true);
        li.querySelector("[data-summary]").textContent = `${i + 1}. ${summary(w)}`;
        li.querySelectorAll("button").forEach((b) => {
          b.setAttribute("aria-label", `${b.textContent.trim()}: ${summary(w)}`);
          b.dataset.index = String(i);
        });
        list.append(li);
      });
      empty.hidden = widgets.length > 0;
      hidden.value = JSON.stringify(widgets);
    }

    function fillProperties() {
      const k = kind.value;
      const accepts = ACCEPTS[k];
      const ids = selected(device);
      const names = new Map();
      for (const id of ids) {
        for (const p of (byId[id] || { properties: [] }).properties) {
          if (!accepts || accepts.includes(p.kind)) names.set(p.id, p.id);
        }
      }
      property.replaceChildren(...Array.from(names.keys()).map((n) => new Option(n, n)));
      if (property.options.length) property.options[0].selected = true;
    }

    function onKind() {
      const k = kind.value;
      device.multiple = k === "table";
      device.size = k === "table" ? Math.min(6, Math.max(2, device.options.length)) : 0;
      if (k === "alarms") { if (!anyOption.parentNode) device.prepend(anyOption); }
      else if (anyOption.parentNode) anyOption.remove();
      property.multiple = MULTI_PROPERTY.includes(k);
      property.disabled = k === "alarms";
      document.getElementById("dash-hint").hidden = !(property.multiple || device.multiple);
      form.querySelectorAll("[data-for]").forEach((el) => {
        const wanted = el.dataset.for;
        el.hidden = !(wanted === k || (wanted === "range" && (k === "trend" || k === "state_timeline")));
      });
      document.getElementById("dash-range").value = k === "state_timeline" ? "24h" : "1h";
      fillProperties();
    }

    function build() {
      const k = kind.value;
      const w = { kind: k };
      const title = document.getElementById("dash-title").value.trim();
      if (title) w.title = title;
      const ids = selected(device).map(Number);
      const props = selected(property);
      if (k === "alarms") {
        if (ids.length) w.device = ids[0];
        w.limit = Number(document.getElementById("dash-limit").value || 10);
        return w;
      }
      if (!ids.length) throw new Error(error.dataset.needDevice);
      if (!props.length) throw new Error(error.dataset.needProperty);
      if (k === "table") { w.devices = ids; w.properties = props; return w; }
      w.device = ids[0];
      if (k === "trend") w.properties = props;
      else w.property = props[0];
      if (k === "trend" || k === "state_timeline") w.range = document.getElementById("dash-range").value;
      if (k === "gauge") {
        w.min = Number(document.getElementById("dash-min").value);
        w.max = Number(document.getElementById("dash-max").value);
      }
      return w;
    }

    document.getElementById("dash-add-widget").addEventListener("click", () => {
      try {
        widgets.push(build());
        error.textContent = "";
        document.getElementById("dash-title").value = "";
        draw();
      } catch (exc) {
        error.textContent = exc.message;
      }
    });

    list.addEventListener("click", (event) => {
      const button = event.target.closest("button");
      if (!button) return;
      const i = Number(button.dataset.index);
      if (button.hasAttribute("data-remove")) widgets.splice(i, 1);
      else {
        const j = i + Number(button.dataset.move);
        if (j < 0 || j >= widgets.length) return;
        [widgets[i], widgets[j]] = [widgets[j], widgets[i]];
      }
      draw();
      // Keep the keyboard where it was: on the same button of the moved widget, else the list.
      const again = list.querySelector(`button[data-index="${Math.min(i, widgets.length - 1)}"]`);
      (again || document.getElementById("dash-add-widget")).focus();
    });

    kind.addEventListener("change", onKind);
    device.addEventListener("change", fillProperties);
    onKind();
    draw();
  }

  // The dashboard view ---------------------------------------------------------------------

  function chartWidget(el) {
    const kind = el.dataset.dashChart;
    const keys = el.dataset.keys.split(",").filter(Boolean);
    const status = el.parentElement.querySelector("[data-dash-status]");
    const chart = echarts.init(el);
    chart.setOption({
      animation: false,
      tooltip: { trigger: "axis" },
      legend: { data: keys, top: 0 },
      grid: { left: 50, right: 20, top: 35, bottom: 30 },
      xAxis: { type: "time" },
      yAxis: { type: "value", scale: true },
      series: keys.map((k) => ({ name: k, type: "line", showSymbol: false, step: kind === "state_timeline" ? "end" : false, data: [] })),
    });
    window.addEventListener("resize", () => chart.resize());

    async function load() {
      const end = Date.now();
      const start = end - Number(el.dataset.rangeMs);
      const points = Math.max(200, Math.min(4000, Math.round(el.clientWidth * 2)));
      const url = `${el.dataset.history}?keys=${encodeURIComponent(keys.join(","))}&start=${start}&end=${end}&points=${points}`;
      try {
        const body = await getJSON(url);
        let shown = 0;
        const series = body.series.map((s) => {
          const data = s.ts.map((t, i) => [t, s.value[i]]);
          shown += data.length;
          return { name: s.property, data };
        });
        chart.setOption({ series });
        el.dataset.shown = String(shown);
        if (status) status.textContent = shown ? "" : status.dataset.empty;
      } catch (exc) {
        if (status) status.textContent = exc.message;
      }
    }
    load();
    setInterval(load, CHART_REFRESH_MS);
  }

  function gaugeWidget(el) {
    const chart = echarts.init(el);
    chart.setOption({
      animation: false,
      series: [{
        type: "gauge",
        min: Number(el.dataset.min),
        max: Number(el.dataset.max),
        detail: { valueAnimation: false, formatter: "{value}" },
        data: [{ value: 0, name: el.dataset.property }],
      }],
    });
    window.addEventListener("resize", () => chart.resize());
    return chart;
  }

  function latestWidget(el, url, chart) {
    async function load() {
      try {
        const body = await getJSON(url);
        for (const v of body.values) {
          const cell = el.querySelector(`[data-dash-value="${CSS.escape(v.property)}"]`);
          if (cell) cell.textContent = v.value === null || v.value === undefined ? "—" : String(v.value);
          const at = el.querySelector("[data-dash-at]");
          if (at && v.ts) { at.dataset.ms = String(v.ts); at.textContent = new Date(v.ts).toLocaleString(); }
          if (chart && typeof v.value === "number") chart.setOption({ series: [{ data: [{ value: v.value, name: v.property }] }] });
        }
        el.dataset.loaded = "true";
      } catch (exc) {
        el.dataset.error = exc.message;
      }
    }
    return load;
  }

  function alarmsWidget(table, empty) {
    const tbody = table.querySelector("tbody");
    async function load() {
      try {
        const body = await getJSON(table.dataset.dashAlarms);
        const rows = body.items.map((a) => {
          const tr = document.createElement("tr");
          const sev = document.createElement("span");
          sev.className = `sev sev-${a.severity}`;
          sev.textContent = table.dataset[`severity${a.severity[0].toUpperCase()}${a.severity.slice(1)}`] || a.severity;
          const cells = [sev, a.name, table.dataset[`state${a.state[0].toUpperCase()}${a.state.slice(1)}`] || a.state, new Date(a.raised_at).toLocaleString()];
          for (const c of cells) {
            const td = document.createElement("td");
            if (typeof c === "string") td.textContent = c; else td.append(c);
            tr.append(td);
          }
          return tr;
        });
        if (!rows.length) {
          const tr = document.createElement("tr");
          const td = document.createElement("td");
          td.colSpan = 4;
          td.className = "muted";
          td.textContent = empty;
          tr.append(td);
          rows.push(tr);
        }
        tbody.replaceChildren(...rows);
      } catch (exc) {
        table.dataset.error = exc.message;
      }
    }
    return load;
  }

  function board(root) {
    const refresh = [];
    root.querySelectorAll("[data-dash-chart]").forEach((el) => { if (window.echarts) chartWidget(el); });
    root.querySelectorAll("[data-dash-gauge]").forEach((el) => {
      const chart = window.echarts ? gaugeWidget(el) : null;
      refresh.push(latestWidget(el.closest("section"), el.dataset.latest, chart));
    });
    root.querySelectorAll("[data-dash-latest]").forEach((el) => refresh.push(latestWidget(el, el.dataset.dashLatest, null)));
    root.querySelectorAll("[data-dash-alarms]").forEach((el) => refresh.push(alarmsWidget(el, root.dataset.dashEmpty)));
    const all = () => refresh.forEach((load) => load());
    all();
    setInterval(() => { if (!document.hidden) all(); }, Number(root.dataset.refreshMs || 5000));
  }

  function start() {
    const form = document.getElementById("dash-editor");
    if (form) editor(form);
    const root = document.getElementById("dash-board");
    if (root) board(root);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
