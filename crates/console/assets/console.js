// Draws the console's charts with the vendored Chart.js. Each chart is a
// <canvas data-chart="counts|bytes|tokens|curve" data-source="ID"> whose data is
// the JSON in <script type="application/json" id="ID"> (written by the server).
// "curve" is a line per series over its labels (the run report's training
// curve), with the axis titles the data names.
(function () {
  "use strict";
  var COLOURS = {
    read: "#2563eb",   // blue
    write: "#16a34a",  // green
    deny: "#dc2626",   // red
    sql: "#7c3aed",    // violet
    token: "#d97706",  // amber
  };
  var PALETTE = ["#0891b2", "#d97706", "#7c3aed", "#db2777", "#65a30d", "#475569", "#ea580c", "#0d9488"];

  function humanBytes(v) {
    var units = ["B", "KiB", "MiB", "GiB", "TiB"];
    var i = 0;
    while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i === 0 ? v : v.toFixed(1)) + " " + units[i];
  }

  function draw(canvas) {
    var source = document.getElementById(canvas.dataset.source);
    if (!source || typeof Chart === "undefined") { return; }
    var data = JSON.parse(source.textContent);
    var kind = canvas.dataset.chart;
    // Lines for quantities over time or epochs; stacked bars for counts.
    var line = kind === "bytes" || kind === "curve";
    var series = kind === "bytes" ? data.bytes : data.counts;
    // Bytes are drawn in the one binary unit that suits the largest value, so
    // the axis ticks are round numbers of it.
    var unit = "B", scale = 1;
    if (kind === "bytes") {
      var max = 0;
      series.forEach(function (s) { s.data.forEach(function (v) { max = Math.max(max, v); }); });
      ["KiB", "MiB", "GiB", "TiB"].forEach(function (u, i) {
        if (max >= Math.pow(1024, i + 1)) { unit = u; scale = Math.pow(1024, i + 1); }
      });
    }
    var datasets = series.map(function (s, i) {
      // Kinds of access have fixed colours; per-principal or per-metric lines take the palette's.
      var colour = COLOURS[s.kind] || PALETTE[i % PALETTE.length];
      return {
        label: s.label,
        data: kind === "bytes" ? s.data.map(function (v) { return v / scale; }) : s.data,
        backgroundColor: colour,
        borderColor: colour,
        borderWidth: line ? 2 : 0,
        pointRadius: line ? 2 : 0,
        fill: false,
        tension: 0,
      };
    });
    var yTitle = data.y_title || (kind === "bytes" ? "bytes (" + unit + ")" : (kind === "tokens" ? "tokens issued" : "requests"));
    new Chart(canvas, {
      type: line ? "line" : "bar",
      data: { labels: data.labels, datasets: datasets },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        interaction: { mode: "index", intersect: false },
        plugins: {
          legend: { position: "top", labels: { boxWidth: 14 } },
          tooltip: {
            callbacks: kind === "bytes" ? {
              label: function (ctx) { return ctx.dataset.label + ": " + humanBytes(ctx.parsed.y * scale); },
            } : {},
          },
        },
        scales: {
          x: {
            stacked: !line,
            title: { display: true, text: data.x_title },
            ticks: { maxRotation: 0, autoSkip: true, autoSkipPadding: 16, maxTicksLimit: 10 },
            grid: { display: false },
          },
          y: {
            stacked: !line,
            beginAtZero: true,
            title: { display: true, text: yTitle },
            ticks: line ? {} : { precision: 0 },
          },
        },
      },
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("canvas[data-chart]").forEach(draw);
  });
})();
