// Gateways page: small trends of the gateway's own health (poll latency, buffer depth) from
// the device history API of its health device.
"use strict";

(function () {
  async function draw(el, range) {
    const keys = el.dataset.keys.split(",").filter(Boolean);
    if (!keys.length) return 0;
    const end = Date.now();
    const url = `${el.dataset.history}?keys=${encodeURIComponent(keys.join(","))}&start=${end - range * 1000}&end=${end}&points=400`;
    const response = await fetch(url, { credentials: "same-origin" });
    if (!response.ok) return 0;
    const body = await response.json();
    const chart = echarts.getInstanceByDom(el) || echarts.init(el);
    let shown = 0;
    chart.setOption({
      animation: false,
      title: { text: el.dataset.title, left: 0, textStyle: { fontSize: 13 } },
      tooltip: { trigger: "axis" },
      legend: { top: 0, right: 0, data: body.series.map((s) => s.property) },
      grid: { left: 55, right: 20, top: 45, bottom: 30 },
      xAxis: { type: "time" },
      yAxis: { type: "value", scale: true },
      series: body.series.map((s) => {
        shown += s.ts.length;
        return { name: s.property, type: "line", showSymbol: false, data: s.ts.map((t, i) => [t, s.value[i]]) };
      }),
    }, true);
    el.dataset.shown = String(shown);
    return shown;
  }

  function start() {
    const form = document.getElementById("gw-trend-form");
    if (!form || !window.echarts) return;
    const charts = [document.getElementById("gw-latency"), document.getElementById("gw-buffer")];
    const status = document.getElementById("gw-trend-status");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const range = Number(form.elements.range.value);
      const counts = await Promise.all(charts.map((el) => draw(el, range)));
      status.textContent = counts.some((n) => n > 0) ? "" : status.dataset.empty;
    });
    window.addEventListener("resize", () => charts.forEach((el) => { const c = echarts.getInstanceByDom(el); if (c) c.resize(); }));
    form.requestSubmit();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
