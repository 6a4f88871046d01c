// Yugong console, rules and commands: show the fields a rule's condition kind and target
// take (the server still judges the spec), draw a dry-run on the property's history, and
// put the typed value into a command's confirmation question.
"use strict";

(function () {
  // The rule form: fields by kind and target. Delegated, so a form swapped in by htmx
  // (after a refused save) behaves the same.
  function showKind(form) {
    const kind = form.querySelector("[data-rule-kind]");
    if (!kind) return;
    form.querySelectorAll("[data-kinds]").forEach((el) => {
      el.hidden = !el.dataset.kinds.split(" ").includes(kind.value);
    });
  }

  function showTarget(form) {
    const pick = form.querySelector("[data-target-kind]");
    if (!pick) return;
    form.querySelectorAll("[data-target]").forEach((el) => {
      el.hidden = el.dataset.target !== pick.value;
    });
  }

  document.addEventListener("change", (event) => {
    const form = event.target.closest("#rule-form");
    if (!form) return;
    if (event.target.matches("[data-rule-kind]")) showKind(form);
    if (event.target.matches("[data-target-kind]")) showTarget(form);
  });

  // Dry-run: the property's history as a line, each would-be alarm as a marked area from
  // raise to clear (to the end of the range while still raised) and a point at its raise.
  function dryRun(form) {
    const el = document.getElementById("dry-run-chart");
    const status = document.getElementById("dry-run-status");
    const table = document.getElementById("dry-run-alarms");
    let chart = null;

    function fmt(ms) {
      return ms == null ? "—" : new Date(Number(ms)).toLocaleString();
    }

    async function run() {
      status.textContent = status.dataset.running;
      const params = new URLSearchParams({ device: form.elements.device.value, range: form.elements.range.value });
      const response = await fetch(`${form.dataset.dryRun}?${params}`, { credentials: "same-origin" });
      const body = await response.json();
      if (!response.ok) { status.textContent = body.detail || response.statusText; return; }
      let pairs = [];
      if (body.property) {
        const hist = new URLSearchParams({ keys: body.property, start: body.start, end: body.end, points: 2000 });
        const h = await fetch(`${body.history}?${hist}`, { credentials: "same-origin" });
        if (h.ok) {
          const s = (await h.json()).series[0];
          if (s) pairs = s.ts.map((t, i) => [t, s.value[i]]);
        }
      }
      const label = el.dataset.alarmLabel;
      const areas = body.alarms.map((a) => [
        { name: label, xAxis: a.raised_at },
        { xAxis: a.cleared_at == null ? body.end : a.cleared_at },
      ]);
      const points = body.alarms.map((a) => ({ name: label, coord: [a.raised_at, a.value], value: a.value }));
      if (chart) chart.dispose();
      chart = echarts.init(el);
      chart.setOption({
        animation: false,
        tooltip: { trigger: "axis" },
        legend: { data: [body.property || label] },
        grid: { left: 50, right: 20, top: 35, bottom: 40 },
        xAxis: { type: "time", min: body.start, max: body.end },
        yAxis: { type: "value", scale: true },
        series: [{
          name: body.property || label,
          type: "line",
          showSymbol: false,
          data: pairs,
          markArea: { silent: true, itemStyle: { color: "rgba(200, 40, 40, 0.15)" }, data: areas },
          markPoint: { symbol: "pin", symbolSize: 36, itemStyle: { color: "#c62828" }, data: points.filter((p) => p.value != null) },
        }],
      });
      el.dataset.alarms = String(body.alarms.length);
      el.dataset.points = String(pairs.length);
      const rows = table.querySelector("tbody");
      rows.replaceChildren(...body.alarms.map((a) => {
        const tr = document.createElement("tr");
        for (const text of [fmt(a.raised_at), fmt(a.cleared_at), a.value == null ? "—" : String(a.value)]) {
          const td = document.createElement("td");
          td.textContent = text;
          tr.appendChild(td);
        }
        return tr;
      }));
      table.hidden = body.alarms.length === 0;
      status.textContent = body.alarms.length
        ? status.dataset.found.replace("{count}", body.alarms.length)
        : status.dataset.none;
    }

    form.addEventListener("submit", (event) => {
      event.preventDefault();
      run().catch((err) => { status.textContent = String(err); });
    });
    window.addEventListener("resize", () => chart && chart.resize());
  }

  // Commands: the confirmation names the value typed in the form that is being sent.
  document.addEventListener("htmx:confirm", (event) => {
    const form = event.detail.elt.closest("form[data-command]");
    if (!form || !event.detail.question) return;
    event.preventDefault();
    const field = form.elements.value;
    const choice = field && field.tagName === "SELECT" ? field.options[field.selectedIndex].text : (field ? field.value : "");
    if (window.confirm(event.detail.question.replace("{value}", choice))) event.detail.issueRequest(true);
  });

  function start() {
    const form = document.getElementById("dry-run-form");
    if (form && window.echarts) dryRun(form);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
