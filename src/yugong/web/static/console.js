// Yugong console: the small client layer beside htmx — charts (ECharts), the live trend
// (Server-Sent Events), local times, and alarm-list refresh on alarm changes.
"use strict";

(function () {
  const MAX_LIVE_POINTS = 600;

  function fmtTime(ms) {
    const d = new Date(Number(ms));
    return isNaN(d) ? "" : d.toLocaleString();
  }

  function localTimes(root) {
    root.querySelectorAll("time[data-ms]").forEach((el) => { el.textContent = fmtTime(el.dataset.ms); });
  }

  function lineChart(el, names) {
    const chart = echarts.init(el);
    chart.setOption({
      animation: false,
      tooltip: { trigger: "axis" },
      legend: { data: names },
      grid: { left: 50, right: 20, top: 35, bottom: 60 },
      xAxis: { type: "time" },
      yAxis: { type: "value", scale: true },
      series: names.map((n) => ({ name: n, type: "line", showSymbol: false, data: [] })),
    });
    window.addEventListener("resize", () => chart.resize());
    return chart;
  }

  function liveTrend(el) {
    const names = el.dataset.series.split(",").filter(Boolean);
    const chart = lineChart(el, names);
    const data = Object.fromEntries(names.map((n) => [n, []]));
    const status = document.getElementById("live-status");
    const source = new EventSource(el.dataset.live);
    el.dataset.points = "0";
    source.onmessage = (event) => {
      const msg = JSON.parse(event.data);
      let added = 0;
      for (const [name, value] of Object.entries(msg.values || {})) {
        if (!(name in data) || typeof value !== "number") continue;
        data[name].push([msg.ts, value]);
        if (data[name].length > MAX_LIVE_POINTS) data[name].shift();
        added += 1;
        const cell = document.querySelector(`[data-latest="${CSS.escape(name)}"]`);
        if (cell) cell.textContent = String(value);
      }
      if (!added) return;
      el.dataset.points = String(Number(el.dataset.points) + added);
      chart.setOption({ series: names.map((n) => ({ name: n, data: data[n] })) });
      if (status) status.textContent = status.dataset.receiving;
    };
    window.addEventListener("pagehide", () => source.close());
  }

  function history(form) {
    const el = document.getElementById("history-chart");
    const status = document.getElementById("history-status");
    let chart = null;
    let timer = null;

    async function load(key, start, end) {
      const points = Math.max(200, Math.min(4000, Math.round(el.clientWidth * 2)));
      const url = `${form.dataset.history}?keys=${encodeURIComponent(key)}&start=${Math.round(start)}&end=${Math.round(end)}&points=${points}`;
      const response = await fetch(url, { credentials: "same-origin" });
      if (!response.ok) { status.textContent = (await response.json()).detail || response.statusText; return; }
      const body = await response.json();
      const s = body.series[0];
      const pairs = s.ts.map((t, i) => [t, s.value[i]]);
      if (!chart) {
        chart = lineChart(el, [key]);
        chart.setOption({ dataZoom: [{ type: "inside", filterMode: "none" }, { type: "slider", filterMode: "none" }] });
        chart.on("datazoom", () => {
          clearTimeout(timer);
          timer = setTimeout(() => {
            const axis = chart.getModel().getComponent("xAxis", 0).axis.scale.getExtent();
            load(key, axis[0], axis[1]);
          }, 250);
        });
      }
      chart.setOption({ legend: { data: [key] }, series: [{ name: key, type: "line", showSymbol: false, data: pairs }] });
      el.dataset.mode = s.mode;
      el.dataset.shown = String(pairs.length);
      const template = pairs.length ? status.dataset["mode" + s.mode[0].toUpperCase() + s.mode.slice(1)] : status.dataset.empty;
      status.textContent = (template || "").replace("{count}", s.raw_count).replace("{shown}", pairs.length);
    }

    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const key = form.elements.key.value;
      const end = Date.now();
      if (chart) { chart.dispose(); chart = null; }
      load(key, end - Number(form.elements.range.value) * 1000, end);
    });
    form.requestSubmit();
  }

  function alarmStream(el) {
    const source = new EventSource(el.dataset.alarmStream);
    let timer = null;
    source.onmessage = () => {
      clearTimeout(timer);
      timer = setTimeout(() => htmx.trigger(document.body, "alarms-changed"), 300);
    };
    window.addEventListener("pagehide", () => source.close());
  }

  function start() {
    localTimes(document);
    document.querySelectorAll("select[data-autosubmit]").forEach((s) => s.addEventListener("change", () => s.form.submit()));
    const live = document.getElementById("live-chart");
    if (live && window.echarts) liveTrend(live);
    const form = document.getElementById("history-form");
    if (form && window.echarts) history(form);
    const alarms = document.querySelector("[data-alarm-stream]");
    if (alarms) alarmStream(alarms);
    document.body.addEventListener("htmx:afterSwap", (event) => localTimes(event.target));
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
