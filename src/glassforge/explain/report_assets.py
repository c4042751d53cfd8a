"""The report's inline style sheet and script (no external files, no network)."""

CSS = """
:root { --ink: #1d2330; --muted: #5b6475; --line: #d9dee7; --accent: #2f6fb3; --warm: #e07b24; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Hiragino Sans", "Noto Sans CJK JP", "Yu Gothic", sans-serif;
  color: var(--ink); margin: 0; background: #f6f7f9; line-height: 1.6; }
main { max-width: 1080px; margin: 0 auto; padding: 24px 20px 80px; }
h1 { font-size: 1.9rem; margin: 0.2em 0; }
h2 { font-size: 1.35rem; margin: 0 0 0.4em; border-bottom: 2px solid var(--accent); padding-bottom: 4px; }
h3 { font-size: 1.05rem; margin: 1.2em 0 0.4em; }
section { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 18px 22px;
  margin: 22px 0; }
.lead { color: var(--muted); }
.what { background: #eef4fb; border-left: 4px solid var(--accent); padding: 10px 14px; border-radius: 4px; }
.summary { display: flex; gap: 24px; flex-wrap: wrap; align-items: flex-start; }
.summary img { width: 256px; max-width: 100%; image-rendering: pixelated; border: 1px solid var(--line); }
table { border-collapse: collapse; font-size: 0.9rem; }
td, th { border: 1px solid var(--line); padding: 3px 8px; text-align: right; }
th { background: #f0f2f6; }
td.l, th.l { text-align: left; }
.scroll { max-height: 420px; overflow: auto; display: inline-block; }
tr.bos td, tr.eos td { background: #fff4e0; }
tr.padding td { color: var(--muted); background: #f7f7f7; }
tr.more td { color: var(--muted); font-style: italic; text-align: left; }
.flow { display: flex; flex-wrap: wrap; align-items: center; gap: 6px; margin: 10px 0; }
.flow a { display: block; text-decoration: none; color: var(--ink); background: #fff; border: 1px solid var(--accent);
  border-radius: 8px; padding: 6px 10px; font-size: 0.9rem; }
.flow a b { display: block; font-size: 0.78rem; color: var(--muted); font-weight: normal; }
.flow span { color: var(--accent); font-size: 1.2rem; }
.pics { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
figure { margin: 0; text-align: center; font-size: 0.82rem; color: var(--muted); }
figure img { display: block; width: 128px; height: auto; image-rendering: pixelated; border: 1px solid var(--line);
  background: #fff; }
figure.big img { width: 256px; }
.chart { width: 100%; max-width: 560px; height: auto; background: #fff; }
.heat { display: flex; gap: 6px; align-items: stretch; }
.heat ol { list-style: none; margin: 0; padding: 0; font: 11px/14px monospace; text-align: right; white-space: nowrap; }
.heat img { flex: 1; min-width: 0; image-rendering: pixelated; border: 1px solid var(--line); }
.mono, pre { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 0.86rem; }
pre { background: #f4f6fa; border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px; overflow-x: auto;
  white-space: pre-wrap; }
.controls { display: flex; align-items: center; gap: 12px; position: sticky; top: 0; background: #fff; padding: 8px 0;
  z-index: 2; border-bottom: 1px solid var(--line); }
.controls input[type=range] { flex: 1; }
.controls button { font-size: 1rem; padding: 4px 14px; border-radius: 6px; border: 1px solid var(--accent);
  background: var(--accent); color: #fff; cursor: pointer; min-width: 120px; }
.controls .now { font-family: ui-monospace, monospace; min-width: 260px; }
.note { color: var(--muted); font-size: 0.9rem; }
.attention { border: 1px dashed var(--warm); border-radius: 6px; padding: 8px 12px; color: #8a4a12; background: #fff8f0; }
.ok { color: #1d7a3a; }
.words { display: flex; flex-wrap: wrap; gap: 6px; margin: 8px 0; }
.words button { font: 0.95rem ui-monospace, monospace; padding: 3px 10px; border-radius: 14px; cursor: pointer;
  border: 1px solid var(--warm); background: #fff; color: var(--ink); }
.words button.eos { border-style: dashed; color: var(--muted); }
.words button.on { background: var(--warm); color: #fff; }
.overlay { position: relative; display: inline-block; background: #000; line-height: 0; }
.overlay img { border: 0; background: none; }
.overlay img.base { opacity: 0.6; }
.overlay img.heat { position: absolute; left: 0; top: 0; width: 100%; height: 100%; image-rendering: auto; }
figure.att { cursor: pointer; }
figure.att.on figcaption { color: var(--warm); font-weight: bold; }
figure.att .overlay img { width: 96px; }
figure.big.att .overlay img { width: 256px; }
figure.big.att figcaption { max-width: 256px; }
"""

JS = """
(function () {
  var data = JSON.parse(document.getElementById('steps-data').textContent);
  var words = JSON.parse(document.getElementById('words-data').textContent);
  var slider = document.getElementById('step-slider');
  var button = document.getElementById('play');
  var timer = null;
  function el(id) { return document.getElementById(id); }
  function figures(target, uris, labels) {
    target.innerHTML = '';
    uris.forEach(function (uri, k) {
      if (!uri) { return; }
      var f = document.createElement('figure');
      var img = document.createElement('img');
      img.src = uri; img.alt = labels[k];
      var cap = document.createElement('figcaption');
      cap.textContent = labels[k];
      f.appendChild(img); f.appendChild(cap); target.appendChild(f);
    });
  }
  function lines(target, list) { target.textContent = list.join('\\n'); }
  var attBox = el('attention-data');
  var att = attBox ? JSON.parse(attBox.textContent) : null;
  var word = att ? att.first : 0;
  function overlay(base, heat, alt) {
    var d = document.createElement('div');
    d.className = 'overlay';
    var a = document.createElement('img');
    a.className = 'base'; a.src = base; a.alt = '';
    var b = document.createElement('img');
    b.className = 'heat'; b.src = heat; b.alt = alt;
    d.appendChild(a); d.appendChild(b);
    return d;
  }
  function attention(s) {
    if (!att || !s.att) { return; }
    var a = s.att;
    var row = el('att-words');
    row.innerHTML = '';
    att.words.forEach(function (w, k) {
      var b = document.createElement('button');
      b.type = 'button'; b.textContent = w.label; b.title = a.share[k];
      b.className = w.kind + (k === word ? ' on' : '');
      b.addEventListener('click', function () { word = k; attention(data[+slider.value]); });
      row.appendChild(b);
    });
    el('att-base').src = s.x0;
    el('att-heat').src = a.maps[word];
    el('att-heat').alt = att.words[word].label;
    el('att-cap').textContent = '“' + att.words[word].label + '”: ' + a.info[word];
    el('att-rest').textContent = a.rest;
    var all = el('att-all');
    all.innerHTML = '';
    a.maps.forEach(function (uri, k) {
      var f = document.createElement('figure');
      f.className = 'att' + (k === word ? ' on' : '');
      var cap = document.createElement('figcaption');
      cap.textContent = att.words[k].label + ' · ' + a.share[k];
      f.appendChild(overlay(s.x0, uri, att.words[k].label)); f.appendChild(cap);
      f.addEventListener('click', function () { word = k; attention(data[+slider.value]); });
      all.appendChild(f);
    });
  }
  function show(i) {
    var s = data[i];
    slider.value = i;
    el('step-now').textContent = words.step + ' ' + (i + 1) + ' / ' + data.length +
      '   σ ' + s.sigma + ' → ' + s.sigma_next + '   t ' + s.t;
    figures(el('step-latent'), s.latent, s.latent.map(function (_, c) { return 'c' + c; }));
    figures(el('step-x0'), [s.x0], [words.x0]);
    figures(el('step-eps'), s.eps, s.eps.map(function (_, c) { return 'ε̂ c' + c; }));
    figures(el('step-cfg'), [s.cond, s.uncond, s.x0], [words.cond, words.uncond, words.guided]);
    lines(el('step-formula'), s.filled);
    var box = el('step-elements');
    box.innerHTML = '';
    s.elements.forEach(function (item) {
      var h = document.createElement('h3');
      h.textContent = 'x[' + item.at + ']';
      var pre = document.createElement('pre');
      pre.textContent = item.lines.join('\\n');
      box.appendChild(h); box.appendChild(pre);
    });
    el('step-check').textContent = s.check || '';
    var rows = s.stats.map(function (kv) { return '<tr><td class="l">' + kv[0] + '</td><td>' + kv[1] + '</td></tr>'; });
    el('step-stats').innerHTML = rows.join('');
    attention(s);
  }
  function stop() { if (timer) { clearInterval(timer); timer = null; } button.textContent = words.play; }
  button.addEventListener('click', function () {
    if (timer) { stop(); return; }
    button.textContent = words.pause;
    if (+slider.value >= data.length - 1) { show(0); }
    timer = setInterval(function () {
      var next = +slider.value + 1;
      if (next >= data.length) { stop(); return; }
      show(next);
    }, 700);
  });
  slider.addEventListener('input', function () { stop(); show(+slider.value); });
  document.addEventListener('keydown', function (ev) {
    // inputs handle their own arrow keys (the focused slider moves itself and fires 'input')
    if (ev.target && (ev.target.tagName === 'INPUT' || ev.target.tagName === 'SELECT')) { return; }
    if (ev.key === 'ArrowRight') { stop(); show(Math.min(data.length - 1, +slider.value + 1)); }
    if (ev.key === 'ArrowLeft') { stop(); show(Math.max(0, +slider.value - 1)); }
  });
  show(0);
  window.glassforgeShowStep = show;
})();
"""
