// Components page: draws each array output of a "try it" run (data-chart: name, unit, y and
// the x output of the same length, or none for the sample index) as a line chart.
"use strict";

(function () {
  function label(name, unit) {
    return unit ? `${name} (${unit})` : name;
  }

  function draw(el) {
    if (el.dataset.drawn || !window.echarts) return;
    const c = JSON.parse(el.dataset.chart);
    const data = c.x ? c.y.map((v, i) => [c.x[i], v]) : c.y.map((v, i) => [i, v]);
    const chart = echarts.init(el);
    chart.setOption({
      animation: false,
      title: { text: label(c.name, c.unit), textStyle: { fontSize: 13 } },
      tooltip: { trigger: "axis" },
      grid: { left: 60, right: 25, top: 40, bottom: 60 },
      xAxis: { type: "value", name: c.x ? label(c.xname, c.xunit) : el.dataset.index, nameLocation: "middle", nameGap: 28, scale: true },
      yAxis: { type: "value", scale: true },
      dataZoom: [{ type: "inside" }, { type: "slider", height: 18, bottom: 5 }],
      series: [{ name: c.name, type: "line", showSymbol: data.length < 60, data: data }],
    });
    el.dataset.drawn = String(data.length);
    window.addEventListener("resize", () => chart.resize());
  }

  function drawAll(root) {
    root.querySelectorAll("[data-chart]").forEach(draw);
  }

  function start() {
    drawAll(document);
    document.body.addEventListener("htmx:afterSwap", () => drawAll(document));
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
