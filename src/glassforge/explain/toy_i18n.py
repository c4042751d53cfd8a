"""The toy report's words in English and Japanese. ``{name}`` fields are filled with this run's numbers."""

from __future__ import annotations

EN: dict[str, str] = {
    "title": "How the words became points: the toy world",
    "lead": "A real model's latent has thousands of numbers (4 × 64 × 64 for SD 1.5); here it has two, so it "
    "is a point in the plane. Each word of the toy world is a cluster of points, and the “model” is exact: "
    "the best guess of the clean point, D(x, σ) = E[x0 | x], has a closed form. Every quantity of a real "
    "generation — the noise, the σ schedule, the denoiser's prediction, classifier-free guidance, the "
    "sampler's update — can therefore be drawn as points and checked by hand.",
    "prompt": "Prompt",
    "negative": "Negative prompt",
    "none": "(none)",
    "sampler": "Sampler",
    "steps": "Steps",
    "particles": "Particles",
    "followed": "Followed particle",
    # a
    "a_title": "The world: each word is a cluster",
    "a_what": "The toy world has {words} words, each a round Gaussian cluster N(μ, s²·I) around a circle of "
    "radius 2.5 (dog and flower have two sub-clusters). A prompt re-weights the clusters: "
    "p(x0 | prompt) = (1 − leak)·Σ_k π_k·weight(word_k)/Z·N(μ_k, s_k²·I) + leak·p(x0), with leak = {leak}: "
    "a real text-conditional model is never perfectly sharp, and this small share of “any image” is "
    "what CFG > 1 sharpens away. Words are parsed with A1111's emphasis syntax: (dog:1.5), (dog), [dog].",
    "a_words": "This prompt's words: {words}.",
    "a_ignored": "Ignored filler words: {ignored}.",
    "a_empty": "The prompt names no word: it is the unconditional distribution p(x0), every word at once.",
    "col_word": "word",
    "col_cluster": "cluster",
    "col_mean": "centre μ",
    "col_std": "spread s",
    "col_prior": "prior π",
    "col_prompt": "p(· | prompt)",
    "col_negative": "p(· | negative)",
    # b
    "b_title": "Noise: the seed becomes the starting points",
    "b_what": "The seed {seed} starts a random number generator (torch.Generator on the CPU, as for an image), "
    "which draws {count} numbers from N(0, 1): the unit noise ε, one 2-vector per particle. The sampler "
    "starts from x_T = σ_max·ε with σ_max = {sigma0}: a cloud {sigma0}× wider than the world.",
    "b_followed": "The followed particle {p}:",
    # c
    "c_title": "Schedule: how much noise at each step",
    "c_what": "The sampler walks down the noise levels σ from σ_max to 0 in {steps} steps (schedule “{schedule}”, "
    "built on Stable Diffusion's σ table, as for an image). x = x0 + σ·noise: at σ = 1 noise and signal "
    "are the same size; ᾱ = 1/(1 + σ²) is the share of signal power.",
    "c_formula": "The schedule's formula:",
    "col_step": "step i",
    "col_sigma": "σ_i",
    "col_abar": "ᾱ = 1/(1+σ²)",
    "c_plot": "σ per step (log scale)",
    # d
    "d_title": "Steps: the particles travel from noise to the words",
    "d_what": "Move the slider (or press play). At step i every particle x_i (blue) asks the exact denoiser "
    "where its clean point is: D̃(x_i, σ_i) (orange). Early, with σ large, every guess is near the middle of "
    "the prompt's clusters; later each particle chooses a cluster. The sampler “{sampler}” then moves "
    "x_i to x_{{i+1}} (red: the followed particle, its path and its guess). CFG w = {cfg}.",
    "d_far": "The whole journey (radius compressed: r ↦ 1.5·asinh(r/1.5); rings give true radii)",
    "d_near": "The data region (true units)",
    "d_legend_x": "x_i",
    "d_legend_d": "D̃(x_i) prediction",
    "d_legend_f": "followed particle",
    "d_formula": "The sampler's update with this step's numbers:",
    "d_particle": "The followed particle's arithmetic (D_c, D_u, CFG, the update):",
    "d_denoiser": "The exact denoiser at the followed particle (under the prompt):",
    "d_stats": "Statistics",
    "d_check": "Recomputed from x_i, the σ's and D̃ for all {n} particles: largest difference from the sampler's "
    "x_{{i+1}} = {check}",
    "d_not_worked": "This sampler's update is not worked out term by term: its formula, its terms and the "
    "followed particle before and after the step are shown.",
    "step": "step",
    "play": "▶ play",
    "pause": "❚❚ pause",
    "stat_sigma": "σ_i",
    "stat_x": "mean |x_i|",
    "stat_d": "mean |D̃(x_i)|",
    "stat_choice": "predictions nearest the prompt's words",
    "stat_at": "particles already nearest the prompt's words",
    # e
    "e_title": "Where the particles ended",
    "e_what": "After the last step every particle is a point of the data region. Share of the {n} particles "
    "nearest each word's clusters (the prompt asked for: {words}); mean distance to the nearest cluster "
    "centre {dist} (cluster spreads 0.25 … 0.36).",
    "e_share": "share of particles",
    "e_cfg": "With CFG w = {cfg} > 1 each prediction is pushed away from the negative prompt's (empty: “any "
    "word”) by w − 1 times their difference, so the particles arrive from beyond the clusters and may stop in "
    "their outer tails: the toy version of the over-sharp, over-saturated images of a high CFG scale. "
    "--cfg 1 samples the prompt's distribution itself.",
    # f
    "f_title": "The math",
    "f_denoiser": "The exact denoiser of a Gaussian mixture p(x0) = Σ_k π_k·N(μ_k, s_k²·I), noised as "
    "x = x0 + σ·n: D*(x; σ) = E[x0 | x] = Σ_k w_k(x)·(μ_k + s_k²/(s_k² + σ²)·(x − μ_k)), "
    "w_k(x) ∝ π_k·N(x; μ_k, (s_k² + σ²)·I). A real network is trained to approximate exactly this.",
    "f_cfg": "Classifier-free guidance: D̃ = D_u + w·(D_c − D_u), D_c under the prompt, D_u under the "
    "negative prompt (empty: every word); w = 1 uses D_c alone.",
    "f_ode": "The probability-flow ODE every deterministic sampler solves: dx/dσ = (x − D̃(x, σ))/σ.",
    "f_sampler": "This run's sampler, {sampler}: {description}",
    "f_reference": "Reference: {reference}",
    "files": "Files: trace.json holds every number of this run (format glassforge-toy-trace, see docs/explain.md).",
}

JA: dict[str, str] = {
    "title": "ことばが点になるまで:トイワールド",
    "lead": "本物のモデルの潜在表現は数千個の数(SD 1.5 なら 4 × 64 × 64)ですが、ここでは 2 個だけ、つまり平面上の"
    "1 点です。トイワールドでは単語ごとに点の集まり(クラスター)があり、「モデル」は厳密です:"
    "きれいな点の最良の推定 D(x, σ) = E[x0 | x] が式で書けます。ですから本物の生成のあらゆる量——ノイズ、"
    "σ スケジュール、デノイザーの予測、classifier-free guidance、サンプラーの更新——を点として描き、"
    "手で確かめられます。",
    "prompt": "プロンプト",
    "negative": "ネガティブプロンプト",
    "none": "(なし)",
    "sampler": "サンプラー",
    "steps": "ステップ数",
    "particles": "粒子の数",
    "followed": "追跡する粒子",
    # a
    "a_title": "世界:単語ごとにクラスターがある",
    "a_what": "トイワールドには {words} 個の単語があり、それぞれ半径 2.5 の円の上に置かれた丸いガウス分布 "
    "N(μ, s²·I) です(dog と flower は 2 つの小クラスター)。プロンプトはクラスターの重みを変えます:"
    "p(x0 | prompt) = (1 − leak)·Σ_k π_k·weight(word_k)/Z·N(μ_k, s_k²·I) + leak·p(x0)、leak = {leak}。"
    "本物のテキスト条件付きモデルは決して完全には鋭くなく、この「どんな画像でもよい」わずかな分を "
    "CFG > 1 が削ります。単語は A1111 の強調構文で読みます:(dog:1.5)、(dog)、[dog]。",
    "a_words": "このプロンプトの単語:{words}。",
    "a_ignored": "無視した補助語:{ignored}。",
    "a_empty": "プロンプトに単語がありません:無条件の分布 p(x0)、すべての単語です。",
    "col_word": "単語",
    "col_cluster": "クラスター",
    "col_mean": "中心 μ",
    "col_std": "広がり s",
    "col_prior": "事前 π",
    "col_prompt": "p(· | プロンプト)",
    "col_negative": "p(· | ネガティブ)",
    # b
    "b_title": "ノイズ:シードが出発点になる",
    "b_what": "シード {seed} が乱数生成器(画像のときと同じく CPU の torch.Generator)を初期化し、標準正規分布 "
    "N(0, 1) から {count} 個の数を引きます:単位ノイズ ε、粒子ごとに 2 次元ベクトル 1 つ。サンプラーは "
    "x_T = σ_max·ε(σ_max = {sigma0})から出発します:世界より {sigma0} 倍広い雲です。",
    "b_followed": "追跡する粒子 {p}:",
    # c
    "c_title": "スケジュール:各ステップのノイズの量",
    "c_what": "サンプラーはノイズの大きさ σ を σ_max から 0 まで {steps} ステップで下っていきます(スケジュール"
    "「{schedule}」、画像と同じく Stable Diffusion の σ 表から)。x = x0 + σ·noise:σ = 1 でノイズと信号が"
    "同じ大きさ、ᾱ = 1/(1 + σ²) は信号の電力の割合です。",
    "c_formula": "スケジュールの式:",
    "col_step": "ステップ i",
    "col_sigma": "σ_i",
    "col_abar": "ᾱ = 1/(1+σ²)",
    "c_plot": "ステップごとの σ(対数目盛)",
    # d
    "d_title": "ステップ:粒子がノイズから単語へ移動する",
    "d_what": "スライダーを動かす(または再生)と、ステップ i で各粒子 x_i(青)が厳密なデノイザーにきれいな点の"
    "位置を尋ねます:D̃(x_i, σ_i)(橙)。最初 σ が大きいうちはどの推定もプロンプトのクラスターの真ん中付近、"
    "その後それぞれの粒子がクラスターを選びます。サンプラー「{sampler}」が x_i を x_{{i+1}} に動かします"
    "(赤:追跡する粒子、その道筋と推定)。CFG w = {cfg}。",
    "d_far": "旅の全体(半径を圧縮:r ↦ 1.5·asinh(r/1.5)、円は本当の半径)",
    "d_near": "データの領域(本当の単位)",
    "d_legend_x": "x_i",
    "d_legend_d": "予測 D̃(x_i)",
    "d_legend_f": "追跡する粒子",
    "d_formula": "このステップの数値を入れたサンプラーの更新式:",
    "d_particle": "追跡する粒子の計算(D_c、D_u、CFG、更新):",
    "d_denoiser": "追跡する粒子での厳密なデノイザー(プロンプトの下で):",
    "d_stats": "統計",
    "d_check": "x_i、σ、D̃ から全 {n} 粒子について再計算:サンプラーの x_{{i+1}} との最大の差 = {check}",
    "d_not_worked": "このサンプラーの更新は項ごとには展開していません:式、項、追跡する粒子のステップ前後の値を"
    "示します。",
    "step": "ステップ",
    "play": "▶ 再生",
    "pause": "❚❚ 一時停止",
    "stat_sigma": "σ_i",
    "stat_x": "|x_i| の平均",
    "stat_d": "|D̃(x_i)| の平均",
    "stat_choice": "プロンプトの単語に最も近い予測の割合",
    "stat_at": "すでにプロンプトの単語に最も近い粒子の割合",
    # e
    "e_title": "粒子がたどり着いた先",
    "e_what": "最後のステップの後、各粒子はデータ領域の点です。{n} 個の粒子のうち各単語のクラスターに最も近いものの"
    "割合(プロンプトが求めたもの:{words})、最も近いクラスター中心までの平均距離 {dist}(クラスターの広がりは "
    "0.25 … 0.36)。",
    "e_share": "粒子の割合",
    "e_cfg": "CFG w = {cfg} > 1 では、各予測がネガティブプロンプト(空なら「どの単語でもよい」)の予測から、両者の差の "
    "w − 1 倍だけ遠ざけられます。そのため粒子はクラスターの外側からやって来て、その裾で止まることがあります:"
    "CFG スケールが高すぎる画像が鋭すぎ・色が飽和しすぎるのと同じ現象のトイ版です。--cfg 1 ならプロンプトの"
    "分布そのものからサンプルします。",
    # f
    "f_title": "数式",
    "f_denoiser": "ガウス混合 p(x0) = Σ_k π_k·N(μ_k, s_k²·I) を x = x0 + σ·n とノイズを加えたときの厳密な"
    "デノイザー:D*(x; σ) = E[x0 | x] = Σ_k w_k(x)·(μ_k + s_k²/(s_k² + σ²)·(x − μ_k))、"
    "w_k(x) ∝ π_k·N(x; μ_k, (s_k² + σ²)·I)。本物のネットワークはまさにこれを近似するよう学習します。",
    "f_cfg": "Classifier-free guidance:D̃ = D_u + w·(D_c − D_u)、D_c はプロンプトの下、D_u はネガティブ"
    "プロンプトの下(空ならすべての単語);w = 1 なら D_c だけを使います。",
    "f_ode": "決定的なサンプラーが解く確率フロー ODE:dx/dσ = (x − D̃(x, σ))/σ。",
    "f_sampler": "この実行のサンプラー {sampler}:{description}",
    "f_reference": "文献:{reference}",
    "files": "ファイル:trace.json にこの実行のすべての数値があります(形式 glassforge-toy-trace、docs/explain.md 参照)。",
}


def toy_strings(lang: str) -> dict[str, str]:
    """The toy report's words in ``lang`` ("en" or "ja"); missing Japanese entries fall back to English."""
    if lang not in ("en", "ja"):
        raise ValueError(f"unknown language {lang!r}; expected en or ja")
    return EN if lang == "en" else {**EN, **JA}
