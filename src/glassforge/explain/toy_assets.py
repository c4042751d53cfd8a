"""The toy report's extra style and its script: two canvases redrawn for the step the slider shows."""

TOY_CSS = """
.views { display: flex; flex-wrap: wrap; gap: 16px; }
.views figure canvas { width: 460px; max-width: 100%; height: auto; border: 1px solid var(--line); background: #fff; }
.legend { display: flex; gap: 16px; font-size: 0.85rem; color: var(--muted); }
.legend i { display: inline-block; width: 10px; height: 10px; border-radius: 50%; margin-right: 5px; }
.world svg { width: 320px; max-width: 100%; }
"""

TOY_JS = """
(function () {
  var data = JSON.parse(document.getElementById('toy-data').textContent);
  var words = JSON.parse(document.getElementById('words-data').textContent);
  var slider = document.getElementById('step-slider');
  var button = document.getElementById('play');
  var timer = null;
  var C = data.compress;
  function el(id) { return document.getElementById(id); }
  function squash(p) {
    var r = Math.hypot(p[0], p[1]);
    if (r < 1e-12) { return p; }
    var f = C * Math.asinh(r / C) / r;
    return [p[0] * f, p[1] * f];
  }
  var views = {
    far: { canvas: el('view-far'), map: squash, half: C * Math.asinh(data.far / C) * 1.04 },
    near: { canvas: el('view-near'), map: function (p) { return p; }, half: data.near }
  };
  function setup(v) {
    var size = 460, ratio = 2;
    v.canvas.width = size * ratio; v.canvas.height = size * ratio;
    v.ctx = v.canvas.getContext('2d');
    v.ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    v.size = size;
  }
  function px(v, p) {
    var q = v.map(p);
    return [v.size / 2 + q[0] / v.half * v.size / 2, v.size / 2 - q[1] / v.half * v.size / 2];
  }
  function line(v, pts, color, width, dash) {
    var g = v.ctx;
    g.beginPath(); g.strokeStyle = color; g.lineWidth = width; g.setLineDash(dash || []);
    pts.forEach(function (p, k) { var a = px(v, p); if (k) { g.lineTo(a[0], a[1]); } else { g.moveTo(a[0], a[1]); } });
    g.stroke(); g.setLineDash([]);
  }
  function dot(v, p, r, fill, stroke) {
    var a = px(v, p), g = v.ctx;
    g.beginPath(); g.arc(a[0], a[1], r, 0, 2 * Math.PI);
    if (fill) { g.fillStyle = fill; g.fill(); }
    if (stroke) { g.strokeStyle = stroke; g.lineWidth = 1.5; g.stroke(); }
  }
  function circle(centre, radius) {
    var pts = [];
    for (var k = 0; k <= 48; k++) {
      var a = 2 * Math.PI * k / 48;
      pts.push([centre[0] + radius * Math.cos(a), centre[1] + radius * Math.sin(a)]);
    }
    return pts;
  }
  function segment(a, b, parts) {  // a straight move, cut so the compressed view bends it correctly
    var pts = [];
    for (var k = 0; k <= parts; k++) { var t = k / parts; pts.push([a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])]); }
    return pts;
  }
  function background(v, far) {
    var g = v.ctx;
    g.fillStyle = '#fff'; g.fillRect(0, 0, v.size, v.size);
    g.font = '11px sans-serif'; g.fillStyle = '#888';
    if (far) {
      data.rings.forEach(function (r) {
        line(v, circle([0, 0], r), '#e3e6ec', 1);
        var a = px(v, [r * 0.9239, -r * 0.3827]);  // between house and tree
        g.fillText('|x| = ' + r, a[0] + 3, a[1] - 3);
      });
    } else {
      for (var t = -Math.floor(v.half); t <= v.half; t++) {
        line(v, [[t, -v.half], [t, v.half]], t === 0 ? '#cfd4dc' : '#f0f2f5', 1);
        line(v, [[-v.half, t], [v.half, t]], t === 0 ? '#cfd4dc' : '#f0f2f5', 1);
        if (t) { var a = px(v, [t, 0]); g.fillText(String(t), a[0] + 2, a[1] + 12); }
      }
    }
    data.clusters.forEach(function (c) {
      [2, 1].forEach(function (k) {
        var pts = circle(c.m, k * c.s).map(function (p) { return px(v, p); });
        g.beginPath();
        pts.forEach(function (a, j) { if (j) { g.lineTo(a[0], a[1]); } else { g.moveTo(a[0], a[1]); } });
        g.closePath();
        g.globalAlpha = (c.on ? 0.22 : 0.08) / k; g.fillStyle = c.c; g.fill();
        g.globalAlpha = c.on ? 0.9 : 0.4; g.strokeStyle = c.c; g.lineWidth = 1; g.stroke();
        g.globalAlpha = 1;
      });
    });
    g.font = '12px sans-serif';
    data.labels.forEach(function (l) {
      var a = px(v, l.at);
      g.fillStyle = l.c; g.textAlign = 'center'; g.fillText(l.word, a[0], a[1] + 4);
    });
    g.textAlign = 'start';
  }
  function draw(v, i, far) {
    background(v, far);
    var xs = data.xs, parts = far ? 6 : 1;
    v.ctx.globalAlpha = 0.28;
    for (var n = 0; n < xs[0].length; n++) {
      var path = [];
      for (var k = 0; k < i; k++) { path = path.concat(segment(xs[k][n], xs[k + 1][n], parts)); }
      if (path.length) { line(v, path, '#7a9cc6', 0.8); }
    }
    v.ctx.globalAlpha = 1;
    data.ds[i].forEach(function (p) { dot(v, p, 2, '#e07b24'); });
    xs[i].forEach(function (p) { dot(v, p, 2, '#2f6fb3'); });
    var f = data.followed, trail = [];
    for (var s = 0; s <= i; s++) { trail = trail.concat(segment(xs[s][f], xs[s + 1][f], parts)); }
    line(v, trail, '#c0392b', 2);
    line(v, [xs[i][f], data.ds[i][f]], '#e07b24', 1.5, [4, 3]);
    dot(v, data.ds[i][f], 5, null, '#e07b24');
    dot(v, xs[i][f], 4.5, '#c0392b');
    dot(v, xs[i + 1][f], 4.5, '#fff', '#c0392b');
  }
  function show(i) {
    var s = data.steps[i];
    slider.value = i;
    el('step-now').textContent = words.step + ' ' + (i + 1) + ' / ' + data.steps.length +
      '   σ ' + s.sigma + ' → ' + s.sigma_next;
    draw(views.far, i, true);
    draw(views.near, i, false);
    el('step-formula').textContent = s.filled.join('\\n');
    el('step-particle').textContent = s.lines.join('\\n');
    el('step-denoiser').textContent = s.denoiser.join('\\n');
    el('step-check').textContent = s.check || '';
    el('step-stats').innerHTML = '';
    s.stats.forEach(function (kv) {
      var tr = document.createElement('tr');
      [kv[0], kv[1]].forEach(function (text, k) {
        var td = document.createElement('td'); td.textContent = text; if (!k) { td.className = 'l'; }
        tr.appendChild(td);
      });
      el('step-stats').appendChild(tr);
    });
  }
  function stop() { if (timer) { clearInterval(timer); timer = null; } button.textContent = words.play; }
  button.addEventListener('click', function () {
    if (timer) { stop(); return; }
    button.textContent = words.pause;
    if (+slider.value >= data.steps.length - 1) { show(0); }
    timer = setInterval(function () {
      var next = +slider.value + 1;
      if (next >= data.steps.length) { stop(); return; }
      show(next);
    }, 600);
  });
  slider.addEventListener('input', function () { stop(); show(+slider.value); });
  document.addEventListener('keydown', function (ev) {
    if (ev.target && ev.target.tagName === 'INPUT') { return; }  // the focused slider moves itself
    if (ev.key === 'ArrowRight') { stop(); show(Math.min(data.steps.length - 1, +slider.value + 1)); }
    if (ev.key === 'ArrowLeft') { stop(); show(Math.max(0, +slider.value - 1)); }
  });
  setup(views.far); setup(views.near);
  show(0);
  window.glassforgeShowStep = show;
})();
"""
