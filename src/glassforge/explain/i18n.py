"""The report's words in English and Japanese. ``{name}`` fields are filled with this run's numbers."""

from __future__ import annotations

LANGS = ("en", "ja")

EN: dict[str, str] = {
    "title": "How the words became the image",
    "lead": "Every step glassforge took from your prompt to the pixels, with this run's own numbers. "
    "Each section shows what goes in, what happens, and what comes out.",
    "prompt": "Prompt",
    "negative": "Negative prompt",
    "none": "(none)",
    "params": "Settings",
    "final": "The result",
    "flow": "The way through",
    "flow_tokens": "tokens",
    "flow_text": "text vectors",
    "flow_noise": "noise",
    "flow_steps": "denoising steps",
    "flow_latent": "latent",
    "flow_image": "image",
    # a
    "a_title": "Tokenization: the prompt becomes numbers",
    "a_what": "The text is cleaned up (lower case, spaces), then cut into pieces the text encoder knows "
    "(byte-pair encoding, a vocabulary of {vocab} pieces). Each piece has a number, its id. "
    "“</w>” marks the end of a word. The encoder always reads 77 ids: a start token (BOS, id 49406), "
    "up to 75 prompt tokens, an end token (EOS, id 49407), and padding to fill the rest. "
    "Longer prompts are split into chunks of 75 tokens. A weight such as (word:1.2) multiplies that "
    "token's vector later.",
    "a_count": "{count} tokens ({counter}), {chunks} chunk(s) of 77 ids.",
    "a_padding": "… {n} more padding ids ({id}) up to 77",
    "col_chunk": "chunk",
    "col_pos": "position",
    "col_token": "token",
    "col_id": "id",
    "col_weight": "weight",
    "col_kind": "kind",
    "kind_bos": "start (BOS)",
    "kind_token": "prompt",
    "kind_eos": "end (EOS)",
    "kind_padding": "padding",
    "a_negative": "The negative prompt is tokenized the same way ({count} tokens). It is what the image "
    "should move away from; an empty one still gives BOS, EOS and padding.",
    # b
    "b_title": "Text encoder: each token becomes a vector",
    "b_what": "The CLIP text encoder (a transformer) turns the 77 ids into 77 vectors of {dim} numbers "
    "each, and every vector depends on the whole prompt. This {rows}×{dim} matrix is the "
    "“conditioning”: the UNet reads it at every step through cross-attention.",
    "b_heat": "The matrix (rows: tokens, columns: the {dim} dimensions; red positive, blue negative, "
    "white 0; colour range ±{scale}).",
    "b_norms": "Length (L2 norm) of each token's vector.",
    "b_pca": "The 77 vectors projected onto their two main directions (PCA, {share} of the variance). "
    "Tokens with similar vectors lie close together (grey: padding).",
    "b_encoders": "This model has {n} text encoders; their vectors are put side by side: {names}.",
    # c
    "c_title": "Noise: the seed becomes the starting picture",
    "c_what": "The seed {seed} starts a random number generator (torch.Generator on the CPU, as A1111 does), "
    "which draws {count} numbers from the standard normal distribution N(0, 1): the unit noise ε, "
    "shaped {shape} (channels × height × width of the latent). The sampler starts from x_T = σ_max·ε "
    "with σ_max = σ_0 = {sigma0}: pure noise, {sigma0}× larger than an image's latent.",
    "c_channels": "The {c} channels of ε (black −3, grey 0, white +3).",
    "c_hist": "All values of ε (bars) and the N(0, 1) density (red line). mean {mean}, std {std}, "
    "min {min}, max {max}.",
    "c_elements": "Three followed elements:",
    # d
    "d_title": "Schedule: how much noise at each step",
    "d_what": "The sampler walks down a list of noise levels σ, from σ_max to 0, in {steps} steps "
    "(schedule “{schedule}”). σ is the noise's size compared to the image: x = x0 + σ·noise. "
    "The network is told the matching training timestep t (0 … 999, rule “{rule}”). "
    "ᾱ = 1/(1 + σ²) is the share of signal power; √ᾱ and √(1 − ᾱ) are the mix of image and noise "
    "in the network's input.",
    "d_formula": "The schedule's formula:",
    "d_plot_sigma": "σ per step (log scale)",
    "d_plot_t": "timestep t per step",
    "col_step": "step i",
    "col_sigma": "σ_i",
    "col_t": "t_i",
    "col_abar": "ᾱ = 1/(1+σ²)",
    "col_signal": "√ᾱ (image)",
    "col_noise": "√(1−ᾱ) (noise)",
    # e
    "e_title": "The steps: from noise to picture",
    "e_what": "At each step the UNet looks at the current latent x_i and predicts the noise in it "
    "(twice: once with the prompt — cond — and once with the negative prompt — uncond). "
    "Removing the predicted noise gives a guess of the finished latent, D = x − σ·ε (x0, “denoised”). "
    "Classifier-free guidance pushes that guess away from the negative prompt's: "
    "D̃ = D_u + w·(D_c − D_u) with w = {cfg}. The sampler ({sampler}) then moves x_i towards D̃, "
    "to the next noise level σ_{{i+1}}. Use the slider or ▶ to go through the {steps} steps.",
    "e_play": "▶ play",
    "e_pause": "❚❚ pause",
    "e_step": "step",
    "e_latent": "x_i as the UNet sees it: x_i/√(σ_i²+1), channel by channel",
    "e_x0": "predicted x0 (D̃), decoded",
    "e_eps": "predicted noise ε̂ = (x_i − D̃)/σ_i",
    "e_cond": "with the prompt (D_c)",
    "e_uncond": "with the negative prompt (D_u)",
    "e_guided": "guided (D̃)",
    "e_formula": "The sampler's update with this step's numbers",
    "e_elements": "Three followed latent elements, computed by hand",
    "e_check": "recomputed from the recorded inputs: largest difference to the recorded x_{{i+1}} = {check}",
    "e_stats": "Statistics",
    "e_attention": "Cross-attention per word: which word steers which region",
    "e_attention_what": "The UNet reads the prompt through cross-attention: every cell of the latent asks "
    "every token position how much to listen to it, and the answers (a softmax) add up to 1. Shown: the "
    "mean over the {layers} cross-attention layers and their heads, each layer's map enlarged to the "
    "latent's {h}×{w} cells (DAAM's method), for the prompt's half of this step's first model call. Click "
    "a word to lay its map over this step's predicted x0; each map is scaled from its own minimum "
    "(transparent) to its maximum (pale yellow).",
    "e_attention_none": "This trace has no cross-attention maps.",
    "att_info": "{share} of all attention; strongest {region} (max {max} at row {y}, column {x})",
    "att_rest": "The start token BOS takes {bos} of the attention and the padding {padding}; the words "
    "share the rest.",
    "att_text": "where each word looks (share of attention, strongest region, peak cell row, column):",
    "region_top_left": "top left",
    "region_top": "top",
    "region_top_right": "top right",
    "region_left": "left",
    "region_centre": "centre",
    "region_right": "right",
    "region_bottom_left": "bottom left",
    "region_bottom": "bottom",
    "region_bottom_right": "bottom right",
    "e_preview_rgb": "(x0 previews use the fast latent → RGB projection; the final image uses the full VAE)",
    "stat_sigma": "σ_i",
    "stat_x_rms": "RMS of x_i",
    "stat_x_std_over_sqrt(1+sigma^2)": "std of x_i/√(σ²+1)",
    "stat_snr_db": "signal-to-noise −20·log10 σ (dB)",
    "stat_signal_share": "image share √ᾱ",
    "stat_x0_rms": "RMS of D̃",
    "stat_eps_rms": "RMS of ε̂",
    "stat_cond_minus_uncond_rms": "RMS of D_c − D_u (how much the prompt changes the guess)",
    # f
    "f_title": "Pseudo-space: the whole path on one page",
    "f_what": "A latent is {dims} numbers, a point in a {dims}-dimensional space. To draw it, every "
    "latent of the run is projected onto the two directions along which the run's latents differ most "
    "(PCA: {share} of the variance). Blue: x_i/√(σ_i²+1), what the network sees, from the noise (ring, "
    "step 0) to the final latent. Orange: the guess x0 at each step. The guesses settle first; the "
    "path then follows them.",
    "f_x": "latent x_i/√(σ²+1)",
    "f_x0": "predicted x0 (D̃_i)",
    "f_gif": "denoise.gif: the predicted x0 (left) and the latent (right), step by step.",
    # g
    "g_title": "Decode: latent → pixels",
    "g_what": "The final latent ({latent}) is divided by the scale factor {scale} and given to the VAE "
    "decoder, a convolutional network that turns each latent cell into a block of {factor}×{factor} "
    "coloured pixels. It outputs {pixels} numbers between about −1 and 1 (here {min} … {max}; {clamped} of them "
    "outside and clamped). Each becomes a byte: clamp((v + 1)/2, 0, 1)·255, rounded down.",
    "g_pixel": "The centre pixel (row {y}, column {x}):",
    "g_hist": "All decoder outputs; dashed lines: the clamp limits −1 and +1.",
    # h
    "h_title": "The math, with this run's numbers",
    "h_forward": "Training (forward process): a clean latent x0 is mixed with noise ε at a random timestep t: "
    "x_t = √ᾱ_t·x0 + √(1 − ᾱ_t)·ε, with β_t = (√0.00085 + t/999·(√0.012 − √0.00085))², α_t = 1 − β_t, "
    "ᾱ_t = α_1·α_2·…·α_t.",
    "h_loss": "The network ε_θ learns to find the noise: L = E_{{t, x0, ε}} ‖ε − ε_θ(x_t, t)‖².",
    "h_sigma": "glassforge's samplers write the same thing in σ-form: divide by √ᾱ_t, then "
    "x = x_t/√ᾱ_t = x0 + σ_t·ε with σ_t = √((1 − ᾱ_t)/ᾱ_t). That is why the network sees "
    "x/√(σ² + 1) = x_t and the guess is D = x − σ·ε̂.",
    "h_reverse": "Generation (DDPM reverse step): x_{{t−1}} = (1/√α_t)·(x_t − β_t/√(1 − ᾱ_t)·ε_θ(x_t, t)) + "
    "√β̃_t·z. The sampler of this run ({sampler}) is a faster solver of the same reverse process.",
    "h_table": "β, α, ᾱ and σ at this run's timesteps (t rounded to the table index k):",
    "h_first": "At the first step, t = {t} (k = {k}): β = {beta}, ᾱ = {abar}, σ = √((1 − ᾱ)/ᾱ) = {sigma}; "
    "the image's share √ᾱ = {sa}, the noise's share √(1 − ᾱ) = {sn}.",
    "h_curve": "ᾱ_t over the training timesteps t = 0 … 999; dots: this run's timesteps.",
    "col_k": "k",
    "col_beta": "β_k",
    "col_alpha": "α_k",
    "col_abar_k": "ᾱ_k",
    "col_sigma_k": "σ_k",
    "files": "Files: trace.json and trace.safetensors hold every number shown here (format: docs/explain.md).",
}

JA: dict[str, str] = {
    "title": "言葉が画像になるまで",
    "lead": "プロンプトからピクセルまで、glassforge が実際に行った処理を、この生成の実際の数値で順番に示します。"
    "各節では「何が入り」「何が起き」「何が出てくるか」を説明します。",
    "prompt": "プロンプト",
    "negative": "ネガティブプロンプト",
    "none": "(なし)",
    "params": "設定",
    "final": "結果",
    "flow": "全体の流れ",
    "flow_tokens": "トークン",
    "flow_text": "テキストベクトル",
    "flow_noise": "ノイズ",
    "flow_steps": "デノイズの反復",
    "flow_latent": "潜在表現",
    "flow_image": "画像",
    "a_title": "① トークン化:プロンプトが数値になる",
    "a_what": "テキストを整え(小文字化・空白の整理)、テキストエンコーダーが知っている断片に分割します"
    "(バイトペア符号化、語彙は {vocab} 個)。各断片には番号(ID)があります。"
    "「</w>」は単語の終わりを表します。エンコーダーは常に 77 個の ID を読みます:"
    "開始トークン(BOS、ID 49406)、最大 75 個のプロンプトのトークン、終了トークン(EOS、ID 49407)、"
    "残りを埋めるパディングです。長いプロンプトは 75 トークンずつのチャンクに分けられます。"
    "(word:1.2) のような重みは、後でそのトークンのベクトルに掛けられます。",
    "a_count": "トークン数 {count}({counter})、77 個の ID からなるチャンクが {chunks} 個。",
    "a_padding": "… 77 個になるまで、さらにパディング ID({id})が {n} 個",
    "col_chunk": "チャンク",
    "col_pos": "位置",
    "col_token": "トークン",
    "col_id": "ID",
    "col_weight": "重み",
    "col_kind": "種類",
    "kind_bos": "開始(BOS)",
    "kind_token": "プロンプト",
    "kind_eos": "終了(EOS)",
    "kind_padding": "パディング",
    "a_negative": "ネガティブプロンプトも同じようにトークン化されます(トークン数 {count})。"
    "画像を「遠ざけたい」方向を表します。空でも BOS・EOS・パディングになります。",
    "b_title": "② テキストエンコーダー:各トークンがベクトルになる",
    "b_what": "CLIP テキストエンコーダー(Transformer)は 77 個の ID を、それぞれ {dim} 個の数値からなる "
    "77 本のベクトルに変換します。どのベクトルもプロンプト全体の影響を受けます。"
    "この {rows}×{dim} の行列が「条件付け(コンディショニング)」で、UNet は毎ステップ、"
    "クロスアテンションを通じてこれを読みます。",
    "b_heat": "行列(行:トークン、列:{dim} 個の次元。赤は正、青は負、白は 0。色の範囲 ±{scale})。",
    "b_norms": "各トークンのベクトルの長さ(L2 ノルム)。",
    "b_pca": "77 本のベクトルを主な 2 方向に射影した図(PCA、分散の {share} を表示)。"
    "似たベクトルのトークンは近くに並びます(灰色:パディング)。",
    "b_encoders": "このモデルにはテキストエンコーダーが {n} 個あり、ベクトルは横に連結されます:{names}。",
    "c_title": "③ ノイズ:シードが出発点の画像になる",
    "c_what": "シード {seed} で乱数生成器(A1111 と同じく CPU 上の torch.Generator)を初期化し、"
    "標準正規分布 N(0, 1) から {count} 個の数値を引きます。これが単位ノイズ ε で、形は {shape}"
    "(潜在表現のチャンネル × 高さ × 幅)です。サンプラーは x_T = σ_max·ε(σ_max = σ_0 = {sigma0})"
    "から始めます。画像の潜在表現より {sigma0} 倍大きい、純粋なノイズです。",
    "c_channels": "ε の {c} チャンネル(黒 −3、灰 0、白 +3)。",
    "c_hist": "ε のすべての値(棒)と N(0, 1) の密度(赤線)。平均 {mean}、標準偏差 {std}、"
    "最小 {min}、最大 {max}。",
    "c_elements": "追跡する 3 つの要素:",
    "d_title": "④ スケジュール:各ステップのノイズの量",
    "d_what": "サンプラーはノイズの大きさ σ のリストを σ_max から 0 まで {steps} ステップで下っていきます"
    "(スケジュール「{schedule}」)。σ は画像に対するノイズの大きさで、x = x0 + σ·ノイズ です。"
    "ネットワークには対応する学習時のタイムステップ t(0〜999、変換規則「{rule}」)が渡されます。"
    "ᾱ = 1/(1 + σ²) は信号の電力の割合で、√ᾱ と √(1 − ᾱ) がネットワーク入力における"
    "画像とノイズの混ざり具合です。",
    "d_formula": "スケジュールの式:",
    "d_plot_sigma": "各ステップの σ(対数目盛)",
    "d_plot_t": "各ステップのタイムステップ t",
    "col_step": "ステップ i",
    "col_sigma": "σ_i",
    "col_t": "t_i",
    "col_abar": "ᾱ = 1/(1+σ²)",
    "col_signal": "√ᾱ(画像)",
    "col_noise": "√(1−ᾱ)(ノイズ)",
    "e_title": "⑤ 各ステップ:ノイズから画像へ",
    "e_what": "各ステップで UNet は現在の潜在表現 x_i を見て、その中のノイズを予測します"
    "(プロンプトあり=cond と、ネガティブプロンプト=uncond の 2 回)。予測したノイズを取り除くと、"
    "完成した潜在表現の推測 D = x − σ·ε(x0、「デノイズ済み」)が得られます。"
    "CFG(classifier-free guidance)はこの推測をネガティブプロンプト側から遠ざけます:"
    "D̃ = D_u + w·(D_c − D_u)、w = {cfg}。そしてサンプラー({sampler})が x_i を D̃ の方へ動かし、"
    "次のノイズレベル σ_{{i+1}} に進みます。スライダーか ▶ で {steps} ステップを順に見られます。",
    "e_play": "▶ 再生",
    "e_pause": "❚❚ 一時停止",
    "e_step": "ステップ",
    "e_latent": "UNet が見る x_i:x_i/√(σ_i²+1)、チャンネルごと",
    "e_x0": "予測された x0(D̃)をデコードしたもの",
    "e_eps": "予測されたノイズ ε̂ = (x_i − D̃)/σ_i",
    "e_cond": "プロンプトあり(D_c)",
    "e_uncond": "ネガティブプロンプト(D_u)",
    "e_guided": "ガイダンス後(D̃)",
    "e_formula": "このステップの数値を入れたサンプラーの更新式",
    "e_elements": "追跡する 3 つの潜在要素の手計算",
    "e_check": "記録された入力から再計算:記録された x_{{i+1}} との最大の差 = {check}",
    "e_stats": "統計",
    "e_attention": "単語ごとのクロスアテンション:どの単語がどの領域を動かすか",
    "e_attention_what": "UNet はクロスアテンションを通じてプロンプトを読みます。潜在表現の各マスが、"
    "各トークン位置にどれだけ耳を傾けるかを決め、その割合(ソフトマックス)の合計は 1 です。"
    "ここに示すのは、{layers} 個のクロスアテンション層とそのヘッドの平均で、各層のマップを潜在表現の "
    "{h}×{w} マスに拡大してから平均しています(DAAM の方法)。このステップの最初のモデル呼び出しの、"
    "プロンプト側の半分です。単語をクリックすると、そのマップがこのステップの予測 x0 に重ねて表示されます。"
    "各マップはそれ自身の最小値(透明)から最大値(淡い黄色)までの範囲で色付けしています。",
    "e_attention_none": "このトレースにはクロスアテンションのマップがありません。",
    "att_info": "アテンション全体の {share}。最も強いのは{region}(最大 {max}、{y} 行 {x} 列)",
    "att_rest": "開始トークン BOS がアテンションの {bos}、パディングが {padding} を占め、残りを単語が分け合います。",
    "att_text": "各単語が見ている場所(アテンションの割合、最も強い領域、ピークのマスの行・列):",
    "region_top_left": "左上",
    "region_top": "上",
    "region_top_right": "右上",
    "region_left": "左",
    "region_centre": "中央",
    "region_right": "右",
    "region_bottom_left": "左下",
    "region_bottom": "下",
    "region_bottom_right": "右下",
    "e_preview_rgb": "(x0 のプレビューは高速な潜在 → RGB 変換です。最終画像は VAE 全体でデコードしています)",
    "stat_sigma": "σ_i",
    "stat_x_rms": "x_i の RMS",
    "stat_x_std_over_sqrt(1+sigma^2)": "x_i/√(σ²+1) の標準偏差",
    "stat_snr_db": "SN 比 −20·log10 σ(dB)",
    "stat_signal_share": "画像の割合 √ᾱ",
    "stat_x0_rms": "D̃ の RMS",
    "stat_eps_rms": "ε̂ の RMS",
    "stat_cond_minus_uncond_rms": "D_c − D_u の RMS(プロンプトが推測をどれだけ変えるか)",
    "f_title": "⑥ 疑似空間:全行程を 1 枚に",
    "f_what": "潜在表現は {dims} 個の数値、つまり {dims} 次元空間の 1 点です。これを描くために、"
    "この生成のすべての潜在表現を、互いに最も大きく違う 2 方向に射影します(PCA、分散の {share})。"
    "青:ネットワークが見る x_i/√(σ_i²+1)。ノイズ(白丸、ステップ 0)から最終の潜在表現まで。"
    "橙:各ステップでの x0 の推測。推測が先に落ち着き、その後で経路が推測を追いかけます。",
    "f_x": "潜在表現 x_i/√(σ²+1)",
    "f_x0": "予測された x0(D̃_i)",
    "f_gif": "denoise.gif:予測された x0(左)と潜在表現(右)をステップごとに。",
    "g_title": "⑦ デコード:潜在表現 → ピクセル",
    "g_what": "最終の潜在表現({latent})をスケール係数 {scale} で割り、VAE のデコーダーに渡します。"
    "デコーダーは畳み込みネットワークで、潜在表現の 1 マスを {factor}×{factor} ピクセルの色の塊に変えます。"
    "出力は {pixels} 個の、だいたい −1〜1 の数値です(今回は {min} 〜 {max}。範囲外で切り詰められたのは "
    "{clamped})。それぞれが 1 バイトになります:clamp((v + 1)/2, 0, 1)·255 の小数点以下切り捨て。",
    "g_pixel": "中央のピクセル({y} 行目、{x} 列目):",
    "g_hist": "デコーダーの全出力。破線は切り詰めの境界 −1 と +1。",
    "h_title": "⑧ 数式:この生成の数値で",
    "h_forward": "学習(拡散過程):きれいな潜在表現 x0 に、ランダムなタイムステップ t でノイズ ε を混ぜます:"
    "x_t = √ᾱ_t·x0 + √(1 − ᾱ_t)·ε。ここで β_t = (√0.00085 + t/999·(√0.012 − √0.00085))²、"
    "α_t = 1 − β_t、ᾱ_t = α_1·α_2·…·α_t。",
    "h_loss": "ネットワーク ε_θ はノイズを当てるように学習します:L = E_{{t, x0, ε}} ‖ε − ε_θ(x_t, t)‖²。",
    "h_sigma": "glassforge のサンプラーは同じことを σ の形で書きます。√ᾱ_t で割ると "
    "x = x_t/√ᾱ_t = x0 + σ_t·ε、σ_t = √((1 − ᾱ_t)/ᾱ_t)。だからネットワークが見るのは "
    "x/√(σ² + 1) = x_t で、推測は D = x − σ·ε̂ になります。",
    "h_reverse": "生成(DDPM の逆過程の 1 ステップ):x_{{t−1}} = (1/√α_t)·(x_t − β_t/√(1 − ᾱ_t)·ε_θ(x_t, t)) + "
    "√β̃_t·z。今回のサンプラー({sampler})は、同じ逆過程をより少ないステップで解く方法です。",
    "h_table": "今回のタイムステップでの β、α、ᾱ、σ(t を表の番号 k に丸めたもの):",
    "h_first": "最初のステップでは t = {t}(k = {k}):β = {beta}、ᾱ = {abar}、σ = √((1 − ᾱ)/ᾱ) = {sigma}。"
    "画像の割合 √ᾱ = {sa}、ノイズの割合 √(1 − ᾱ) = {sn}。",
    "h_curve": "学習時のタイムステップ t = 0〜999 での ᾱ_t。点は今回のタイムステップ。",
    "col_k": "k",
    "col_beta": "β_k",
    "col_alpha": "α_k",
    "col_abar_k": "ᾱ_k",
    "col_sigma_k": "σ_k",
    "files": "ファイル:ここに示したすべての数値は trace.json と trace.safetensors に入っています"
    "(形式は docs/explain.md)。",
}

STRINGS = {"en": EN, "ja": JA}


def strings(lang: str) -> dict[str, str]:
    if lang not in STRINGS:
        raise ValueError(f"unknown language {lang!r}; expected one of {', '.join(LANGS)}")
    missing = set(EN) - set(STRINGS[lang])
    return {**EN, **STRINGS[lang]} if missing else STRINGS[lang]
