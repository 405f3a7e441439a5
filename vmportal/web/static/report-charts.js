// The report page's charts (/reports): each div.report-chart carries its figures in data-chart
// ({labels, series: [{name, values}], stack}); the vendored ECharts draws them as bars. The same
// figures are in the table after each chart, so the page says everything without this script.
(function () {
  "use strict";
  function draw(el) {
    if (typeof window.echarts === "undefined") return;
    var data;
    try { data = JSON.parse(el.getAttribute("data-chart")); } catch (e) { return; }
    el.style.height = "320px";
    el.style.width = "100%";
    var chart = window.echarts.init(el, null, { renderer: "canvas" });
    chart.setOption({
      animation: false,
      tooltip: { trigger: "axis" },
      legend: { top: 0 },
      grid: { left: 40, right: 16, top: 40, bottom: 60, containLabel: true },
      xAxis: { type: "category", data: data.labels, axisLabel: { interval: 0, rotate: data.labels.length > 6 ? 30 : 0 } },
      yAxis: { type: "value", minInterval: 1 },
      series: data.series.map(function (s) {
        return { name: s.name, type: "bar", stack: data.stack ? "total" : undefined, data: s.values };
      })
    });
    window.addEventListener("resize", function () { chart.resize(); });
    el.setAttribute("data-drawn", "1");
  }
  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll(".report-chart"), draw);
  });
})();
