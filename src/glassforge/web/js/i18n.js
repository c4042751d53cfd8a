// English and Japanese. Static text: data-i18n (text), data-i18n-aria, data-i18n-placeholder, data-i18n-title.

import { $$, emit, store } from "./util.js";

const EN = {
  skip: "Skip to content", nav_label: "Pages", language: "Language", close: "Close",
  nav_generate: "Generate", nav_explain: "Explain", nav_toy: "Toy world", nav_history: "History", nav_workflow: "Workflow",
  model: "Model", prompt: "Prompt", negative: "Negative prompt", prompt_placeholder: "a red circle on a blue background",
  sampler: "Sampler", scheduler: "Schedule type", steps: "Steps", cfg: "CFG scale", seed: "Seed",
  seed_random: "Random seed (−1)", seed_reuse: "Reuse the last seed", width: "Width", height: "Height",
  batch_size: "Batch size", batch_count: "Batch count", size: "Size", status: "Status", step: "Step",
  record_explain: "Record the explanation (every step, attention per word)",
  generate: "Generate", interrupt: "Interrupt", ctrl_enter: "Ctrl+Enter generates.", progress: "Progress", idle: "Ready.",
  strip: "Predicted x0 at each step", infotext: "Infotext", copy_params: "Copy parameters", send_to_form: "Send to form",
  open_explain: "Open in Explain", open_workflow: "Workflow", rate_up: "Good (thumbs up)", rate_down: "Bad (thumbs down)", good: "Good", bad: "Bad",
  gen_what: "Each step the sampler asks the network what the finished picture looks like (the predicted x0, shown above step by step) and moves the noisy latent a little towards it. Open the job in Explain to see every number.",
  no_last_seed: "No seed yet: generate once first.", copied: "Parameters copied.",
  chunk_tokens: "chunk {k}: {n} tokens", token_count: "{count} of {max} tokens ({chunks} chunk(s) of 75)",
  st_queued: "Queued (place {pos}).", st_loading: "Loading the model and encoding the prompt…",
  st_running: "Step {step}/{total} · {speed} · ETA {eta}",
  st_running_batch: "Batch {batch}/{batches} · step {step}/{total} · {speed} · ETA {eta}",
  st_done: "Done in {time} ({steps} steps).", st_interrupted: "Interrupted after {steps} steps.", st_error: "Failed: {error}",
  preview_alt: "Predicted x0 after step {step} of {total}", preview_cap: "Predicted x0 after step {step}/{total}",
  result_alt: "Image {k}: {prompt}", rated: "Rating saved.", unrated: "Rating removed.",
  status_pending: "queued", status_running: "running", status_done: "done", status_error: "failed", status_interrupted: "interrupted",
  job: "Job", loading: "Loading…", x_no_job: "No job yet: generate an image first, or pick one from the list.",
  x_not_recorded: "This job was made without the recorder, so there are no step numbers to show.",
  x_failed: "This explain job is {status} without a recording. {error}",
  x_rerun: "Explain it: run it again with the recorder (same seed, same image)",
  x_final: "The result", x_params: "Parameters", x_steps: "Sampling, step by step",
  x_steps_what: "Move the slider: the latent x_i, the network's guess of the finished picture (x0), the noise it sees, the prompt's and the negative prompt's guesses and the sampler's formula with this step's numbers.",
  play: "Play", pause: "Pause", x_x0: "Predicted x0 (what the network thinks the image will be)",
  x_latent: "Latent channels x_i/√(σ²+1)", x_eps: "Predicted noise ε̂ = (x_i − D̃)/σ", x_cond: "prompt (D_c)",
  x_uncond: "negative (D_u)", x_guided: "guided (D̃)", x_formula: "The sampler's formula with this step's numbers",
  x_elements: "Three latent numbers followed through the step", x_stats: "Statistics",
  x_attention: "Which word paints where (cross-attention)",
  x_attention_what: "Click a word: its attention map at this step is drawn over the picture (bright = attends more).",
  x_words: "Words", x_pseudo: "Pseudo-space: the path of the latent",
  x_pseudo_what: "Every x_i and every prediction D̃_i projected onto their two main directions (PCA).",
  x_schedule: "Noise schedule σ", x_schedule_live: "The σ's the steps so far went through.",
  x_tokens: "Tokenization", x_tokens_what: "The prompt split into CLIP tokens (BOS + up to 75 tokens + EOS, padded to 77) and their emphasis weights.",
  x_decode: "Decode: latent to pixels", x_report: "The full report and the trace files", x_report_show: "Show the report here",
  x_report_open: "Open the full report (new tab)", x_files_later: "The report and the trace files are written when the job finishes.",
  x_waiting: "Waiting for the first step (loading the model, encoding the prompt)…",
  x_writing: "Every step is recorded; writing the report and the trace files…",
  x_live: "Recording: {n} of {total} steps so far.", x_recorded: "{n} steps recorded (job {status}).",
  x_now: "Step {i}/{n} · σ = {sigma} → {next} · t = {t}", x_now_short: "Step {i}/{n} · σ = {sigma} → {next}",
  x_x0_alt: "Predicted x0 at step {i}", x_heat_alt: "Attention map of “{word}”",
  x_att_none: "No attention maps were recorded for this step.", x_path_x: "x_i (latent)", x_path_x0: "D̃_i (prediction)",
  tok_chunk: "chunk", tok_text: "token", tok_weight: "weight", tok_kind: "kind",
  x_decode_later: "The decode is shown once the job has finished.",
  x_decode_what: "The final latent z ({latent}) is divided by the scale factor {scale} and decoded by the VAE into {pixels} values between {min} and {max} ({clamped}% outside [−1, 1], clamped).",
  x_decode_pixel: "One pixel, at (y, x) = ({y}, {x}), from the decoder's output to the byte in the PNG:",
  toy_what: "A 2-D world where every word is a cluster of points. The real sampler runs on the exact denoiser of the prompt's clusters: watch the particles flow from noise to the words you typed.",
  toy_words: "Words", toy_particles: "Particles", toy_run: "Run", toy_canvas: "Particles moving from noise to the word clusters",
  toy_show_d: "Show the predictions D̃ (where each particle is heading)", toy_formula: "This step's formula",
  toy_particle: "The followed particle (red ring)", toy_denoiser: "The exact denoiser at that particle", toy_end: "Where the particles ended",
  toy_after: "after {k} of {n} steps · σ = {sigma}",
  toy_info: "{n} particles · {sampler} · {schedule} · seed {seed}. Words of this world: {words}.",
  search_prompt: "Search prompts", rating: "Rating", any: "Any", search: "Search", load_more: "Load more", note: "Note",
  generate_again: "Generate again", h_count: "{shown} of {total} jobs", no_image: "no image", h_open: "Open: {prompt}",
  rated_up: "rated good", rated_down: "rated bad",
  w_what: "The job as a node graph: the same nodes a ComfyUI workflow uses (glassforge generate runs this graph). Each node shows its inputs and its status.",
  w_editor: "Open the node editor", w_download: "Download this workflow (API JSON, drop it on the editor)",
  w_graph: "Workflow graph", w_form: "the form's current parameters", w_graph_label: "Workflow graph of {n} nodes ({status})",
  node_idle: "idle", node_pending: "waiting", node_running: "running", node_done: "done", node_error: "error",
  node_interrupted: "interrupted", node_skipped: "skipped",
  err_info: "The server's lists could not be loaded: {error}",
};

const JA = {
  skip: "本文へ移動", nav_label: "ページ", language: "言語", close: "閉じる",
  nav_generate: "生成", nav_explain: "解説", nav_toy: "トイワールド", nav_history: "履歴", nav_workflow: "ワークフロー",
  model: "モデル", prompt: "プロンプト", negative: "ネガティブプロンプト", prompt_placeholder: "a red circle on a blue background",
  sampler: "サンプラー", scheduler: "スケジュール", steps: "ステップ数", cfg: "CFG スケール", seed: "シード",
  seed_random: "ランダムなシード(−1)", seed_reuse: "前回のシードを使う", width: "幅", height: "高さ",
  batch_size: "バッチサイズ", batch_count: "バッチ回数", size: "サイズ", status: "状態", step: "ステップ",
  record_explain: "解説を記録する(全ステップ・単語ごとのアテンション)",
  generate: "生成", interrupt: "中断", ctrl_enter: "Ctrl+Enter で生成します。", progress: "進捗", idle: "準備完了。",
  strip: "各ステップの予測 x0", infotext: "生成情報", copy_params: "パラメータをコピー", send_to_form: "フォームに送る",
  open_explain: "解説で開く", open_workflow: "ワークフロー", rate_up: "良い(高評価)", rate_down: "悪い(低評価)", good: "良い", bad: "悪い",
  gen_what: "サンプラーは各ステップでネットワークに「完成した絵はどう見えるか」(予測 x0、上に各ステップ表示)を尋ね、ノイズの多い潜在をそれに向けて少し動かします。すべての数値は「解説」で見られます。",
  no_last_seed: "まだシードがありません。まず一度生成してください。", copied: "パラメータをコピーしました。",
  chunk_tokens: "チャンク {k}: {n} トークン", token_count: "{count} / {max} トークン(75 トークンのチャンク {chunks} 個)",
  st_queued: "待機中({pos} 番目)。", st_loading: "モデルを読み込み、プロンプトをエンコードしています…",
  st_running: "ステップ {step}/{total} · {speed} · 残り {eta}",
  st_running_batch: "バッチ {batch}/{batches} · ステップ {step}/{total} · {speed} · 残り {eta}",
  st_done: "完了:{time}({steps} ステップ)。", st_interrupted: "{steps} ステップで中断しました。", st_error: "失敗:{error}",
  preview_alt: "ステップ {step}/{total} の後の予測 x0", preview_cap: "ステップ {step}/{total} の後の予測 x0",
  result_alt: "画像 {k}:{prompt}", rated: "評価を保存しました。", unrated: "評価を取り消しました。",
  status_pending: "待機中", status_running: "実行中", status_done: "完了", status_error: "失敗", status_interrupted: "中断",
  job: "ジョブ", loading: "読み込み中…", x_no_job: "まだジョブがありません。まず画像を生成するか、一覧から選んでください。",
  x_not_recorded: "このジョブは記録なしで生成されたため、ステップごとの数値はありません。",
  x_failed: "この解説ジョブは記録なしで「{status}」になりました。{error}",
  x_rerun: "解説する:記録しながらもう一度実行(同じシード・同じ画像)",
  x_final: "結果", x_params: "パラメータ", x_steps: "サンプリングを 1 ステップずつ",
  x_steps_what: "スライダーを動かすと、潜在 x_i、ネットワークが予測する完成画像(x0)、ネットワークが見ているノイズ、プロンプトとネガティブプロンプトそれぞれの予測、そしてこのステップの数値を入れたサンプラーの式が表示されます。",
  play: "再生", pause: "一時停止", x_x0: "予測 x0(ネットワークが考える完成画像)",
  x_latent: "潜在のチャンネル x_i/√(σ²+1)", x_eps: "予測ノイズ ε̂ = (x_i − D̃)/σ", x_cond: "プロンプト(D_c)",
  x_uncond: "ネガティブ(D_u)", x_guided: "ガイド後(D̃)", x_formula: "このステップの数値を入れたサンプラーの式",
  x_elements: "ステップを通して追跡する 3 つの潜在の値", x_stats: "統計",
  x_attention: "どの単語がどこを描くか(クロスアテンション)",
  x_attention_what: "単語をクリックすると、このステップでのその単語のアテンションマップが画像に重ねて表示されます(明るいほど強く注目)。",
  x_words: "単語", x_pseudo: "疑似空間:潜在がたどる道",
  x_pseudo_what: "すべての x_i と予測 D̃_i を、主な 2 方向(PCA)に射影したもの。",
  x_schedule: "ノイズスケジュール σ", x_schedule_live: "ここまでのステップが通った σ。",
  x_tokens: "トークン化", x_tokens_what: "プロンプトを CLIP のトークン(BOS + 最大 75 トークン + EOS、77 まで埋める)に分けたものと強調の重み。",
  x_decode: "デコード:潜在から画素へ", x_report: "完全なレポートとトレースファイル", x_report_show: "ここにレポートを表示",
  x_report_open: "完全なレポートを開く(新しいタブ)", x_files_later: "レポートとトレースファイルはジョブの終了時に書き出されます。",
  x_waiting: "最初のステップを待っています(モデルの読み込み、プロンプトのエンコード)…",
  x_writing: "全ステップを記録しました。レポートとトレースファイルを書き出しています…",
  x_live: "記録中:{total} ステップ中 {n} ステップ。", x_recorded: "{n} ステップを記録(ジョブは{status})。",
  x_now: "ステップ {i}/{n} · σ = {sigma} → {next} · t = {t}", x_now_short: "ステップ {i}/{n} · σ = {sigma} → {next}",
  x_x0_alt: "ステップ {i} の予測 x0", x_heat_alt: "「{word}」のアテンションマップ",
  x_att_none: "このステップのアテンションマップは記録されていません。", x_path_x: "x_i(潜在)", x_path_x0: "D̃_i(予測)",
  tok_chunk: "チャンク", tok_text: "トークン", tok_weight: "重み", tok_kind: "種類",
  x_decode_later: "デコードはジョブの終了後に表示されます。",
  x_decode_what: "最後の潜在 z({latent})をスケール係数 {scale} で割り、VAE で {pixels} 個の値(最小 {min}、最大 {max}、[−1, 1] の外側 {clamped}% は切り詰め)にデコードします。",
  x_decode_pixel: "(y, x) = ({y}, {x}) の 1 画素:デコーダーの出力から PNG のバイトまで:",
  toy_what: "すべての単語が点のクラスタになっている 2 次元の世界です。プロンプトのクラスタの厳密なデノイザーの上で本物のサンプラーが動きます。粒子がノイズから入力した単語へ流れていく様子を見てください。",
  toy_words: "単語", toy_particles: "粒子の数", toy_run: "実行", toy_canvas: "ノイズから単語のクラスタへ動く粒子",
  toy_show_d: "予測 D̃ を表示(各粒子の向かう先)", toy_formula: "このステップの式",
  toy_particle: "追跡する粒子(赤い輪)", toy_denoiser: "その粒子での厳密なデノイザー", toy_end: "粒子の行き着いた先",
  toy_after: "{n} ステップ中 {k} ステップ後 · σ = {sigma}",
  toy_info: "粒子 {n} 個 · {sampler} · {schedule} · シード {seed}。この世界の単語:{words}。",
  search_prompt: "プロンプトを検索", rating: "評価", any: "すべて", search: "検索", load_more: "さらに読み込む", note: "メモ",
  generate_again: "もう一度生成", h_count: "{total} 件中 {shown} 件", no_image: "画像なし", h_open: "開く:{prompt}",
  rated_up: "良い評価", rated_down: "悪い評価",
  w_what: "ジョブをノードのグラフとして表示します。ComfyUI のワークフローと同じノードです(glassforge generate はこのグラフを実行します)。各ノードに入力と状態が表示されます。",
  w_editor: "ノードエディターを開く", w_download: "このワークフローをダウンロード(API JSON、エディターにドロップ)",
  w_graph: "ワークフローのグラフ", w_form: "フォームの現在のパラメータ", w_graph_label: "{n} ノードのワークフロー({status})",
  node_idle: "未実行", node_pending: "待機", node_running: "実行中", node_done: "完了", node_error: "エラー",
  node_interrupted: "中断", node_skipped: "スキップ",
  err_info: "サーバーの一覧を読み込めませんでした:{error}",
};

const STRINGS = { en: EN, ja: JA };
let lang = store.get("lang") || ((navigator.language || "").startsWith("ja") ? "ja" : "en");
document.documentElement.lang = lang;

export function getLang() {
  return lang;
}

/** The text for `key` in the current language, with {name} filled from `vars`. */
export function t(key, vars = {}) {
  const text = STRINGS[lang][key] ?? EN[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (m, name) => (vars[name] !== undefined ? String(vars[name]) : m));
}

export function applyI18n(root) {
  for (const node of $$("[data-i18n]", root)) node.textContent = t(node.dataset.i18n);
  for (const node of $$("[data-i18n-aria]", root)) node.setAttribute("aria-label", t(node.dataset.i18nAria));
  for (const node of $$("[data-i18n-placeholder]", root)) node.setAttribute("placeholder", t(node.dataset.i18nPlaceholder));
  for (const node of $$("[data-i18n-title]", root)) node.setAttribute("title", t(node.dataset.i18nTitle));
}

export function setLang(value) {
  lang = STRINGS[value] ? value : "en";
  store.set("lang", lang);
  document.documentElement.lang = lang;
  applyI18n(document);
  emit("lang", lang);
}
