"""A1111 prompt syntax: the doctest examples of ``modules/prompt_parser.py`` (shared/reference/a1111_forge.md §3)
are the oracle, plus the rules stated there."""

import pytest

from glassforge.prompts import (
    ExtraNetworkTag,
    LoraSpec,
    PromptSyntaxError,
    ScheduledText,
    SubPrompt,
    WeightedText,
    extract_extra_networks,
    parse_attention,
    parse_prompt,
    prompt_schedule,
    schedule_index_at,
    split_and,
)


def runs(text, emphasis="Original"):
    return [("BREAK" if r.is_break else r.text, r.weight) for r in parse_attention(text, emphasis)]


def assert_runs(text, expected):
    got = runs(text)
    assert [t for t, _ in got] == [t for t, _ in expected], text
    assert [w for _, w in got] == pytest.approx([w for _, w in expected], rel=1e-12), text


# ------------------------------------------------------------------------------------------ emphasis


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("normal text", [("normal text", 1.0)]),
        ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
        ("(unbalanced", [("unbalanced", 1.1)]),
        ("\\(literal\\]", [("(literal]", 1.0)]),
        ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
        (
            "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
            [
                ("a ", 1.0),
                ("house", 1.5730000000000004),
                (" ", 1.1),
                ("on", 1.0),
                (" a ", 1.1),
                ("hill", 0.55),
                (", sun, ", 1.1),
                ("sky", 1.4641000000000006),
                (".", 1.1),
            ],
        ),
    ],
)
def test_a1111_doctest_examples(text, expected):
    assert_runs(text, expected)


def test_the_doctest_floats_are_reproduced_bit_for_bit():
    # A1111 merges runs by exact float equality, so the multiplication order must match; its doctest prints these
    got = dict(runs("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky)))."))
    assert got["house"] == 1.5730000000000004
    assert got["sky"] == 1.4641000000000006


def test_nesting_multiplies_and_square_divides():
    assert_runs(
        "a (very) ((beautiful)) [dog]",
        [("a ", 1.0), ("very", 1.1), (" ", 1.0), ("beautiful", 1.1 * 1.1), (" ", 1.0), ("dog", 1 / 1.1)],
    )
    assert_runs("[[x]]", [("x", (1 / 1.1) * (1 / 1.1))])
    assert_runs("((x:1.5))", [("x", 1.5 * 1.1)])
    assert_runs("(x: 0.5 )", [("x", 0.5)])  # spaces around the number are allowed
    assert_runs("(x:-1)", [("x", -1.0)])


def test_square_brackets_take_no_number_and_stray_closers_are_text():
    assert_runs("[x:1.2]", [("x:1.2", 1 / 1.1)])
    assert_runs("a) b] c", [("a) b] c", 1.0)])
    assert_runs("x:1.2)", [("x:1.2)", 1.0)])  # ':1.2)' without an open '(' is text
    assert_runs("[unclosed (both", [("unclosed ", 1 / 1.1), ("both", 1.1 / 1.1)])


def test_escapes_and_backslashes():
    assert_runs("\\(a\\) \\[b\\]", [("(a) [b]", 1.0)])
    assert_runs("back\\\\slash", [("back\\slash", 1.0)])  # '\\' is a literal backslash
    assert_runs("a\\b", [("ab", 1.0)])  # any other backslash is dropped
    assert_runs("(a\\)b)", [("a)b", 1.1)])


def test_empty_prompt_is_one_empty_run():
    assert parse_attention("") == [WeightedText("", 1.0)]
    assert parse_attention("()") == [WeightedText("", 1.0)]


def test_break_marker_and_its_whitespace():
    assert runs("a, BREAK b") == [("a,", 1.0), ("BREAK", 1.0), ("b", 1.0)]
    assert runs("a\n  BREAK\nb") == [("a", 1.0), ("BREAK", 1.0), ("b", 1.0)]
    assert runs("BREAKFAST break") == [("BREAKFAST break", 1.0)]  # whole uppercase word only
    assert runs("(a) BREAK (b)") == [("a", 1.1), ("", 1.0), ("BREAK", 1.0), ("", 1.0), ("b", 1.1)]


def test_break_inside_brackets_becomes_a_negative_weight_word_as_in_a1111():
    # A1111 multiplies the marker's internal weight -1 by the bracket, after which it no longer is a BREAK
    got = parse_attention("(a BREAK b)")
    assert [(r.text, r.is_break) for r in got] == [("a", False), ("BREAK", False), ("b", False)]
    assert got[1].weight == pytest.approx(-1.1)


def test_bad_weight_number_is_a_clear_error():
    with pytest.raises(PromptSyntaxError, match=r"'1\.2\.3'.*expected e\.g\. \(word:1\.2\)"):
        parse_attention("(a:1.2.3)")


def test_emphasis_none_reads_everything_literally():
    assert parse_attention("(a:1.3) BREAK [b]", "None") == [WeightedText("(a:1.3) BREAK [b]", 1.0)]
    with pytest.raises(ValueError, match="unknown emphasis mode"):
        parse_attention("a", "Strong")


# --------------------------------------------------------------------------------------- scheduling


def sched(prompt, steps=10, **kw):
    return [[e.end_at_step, e.text] for e in prompt_schedule(prompt, steps, **kw)]


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("test", [[10, "test"]]),
        ("a [b:3]", [[3, "a "], [10, "a b"]]),
        ("a [b: 3]", [[3, "a "], [10, "a b"]]),
        ("a [[[b]]:2]", [[2, "a "], [10, "a [[b]]"]]),
        ("[(a:2):3]", [[3, ""], [10, "(a:2)"]]),
        ("a [b : c : 1] d", [[1, "a b  d"], [10, "a  c  d"]]),
        ("a[b:[c:d:2]:1]e", [[1, "abe"], [2, "ace"], [10, "ade"]]),
        ("a [unbalanced", [[10, "a [unbalanced"]]),
        ("a [b:.5] c", [[5, "a  c"], [10, "a b c"]]),
        ("((a][:b:c [d:3]", [[3, "((a][:b:c "], [10, "((a][:b:c d"]]),
        ("[a|(b:1.1)]", [[k, "a" if k % 2 else "(b:1.1)"] for k in range(1, 11)]),
        ("[fe|]male", [[k, "female" if k % 2 else "male"] for k in range(1, 11)]),
        ("[fe|||]male", [[k, "female" if k % 4 == 1 else "male"] for k in range(1, 11)]),
    ],
)
def test_a1111_schedule_doctests(prompt, expected):
    assert sched(prompt) == expected


def test_hires_pass_doctests():
    assert sched("a [b:.5] c", 10, hires_steps=10) == [[10, "a b c"]]
    assert sched("a [b:1.5] c", 10, hires_steps=10) == [[5, "a  c"], [10, "a b c"]]
    assert sched("a [b:13] c", 10, hires_steps=10) == [[3, "a  c"], [10, "a b c"]]  # integers shift by 10


def test_code_comment_example_100_steps():
    prompt = (
        "fantasy landscape with a [mountain:lake:0.25] and [an oak:a christmas tree:0.75]"
        "[ in foreground::0.6][: in background:0.25] [shoddy:masterful:0.5]"
    )
    assert sched(prompt, 100) == [
        [25, "fantasy landscape with a mountain and an oak in foreground shoddy"],
        [50, "fantasy landscape with a lake and an oak in foreground in background shoddy"],
        [60, "fantasy landscape with a lake and an oak in foreground in background masterful"],
        [75, "fantasy landscape with a lake and an oak in background masterful"],
        [100, "fantasy landscape with a lake and a christmas tree in background masterful"],
    ]


def test_when_rules():
    assert sched("[a:b:1.0]", 10) == [[10, "a"]]  # has a '.', so a fraction: int(1.0·10) = 10 = last step
    assert sched("[a:b:1]", 10) == [[1, "a"], [10, "b"]]  # an integer: step 1
    assert sched("[a:b:25]", 10) == [[10, "a"]]  # clamped to the steps
    assert sched("[a:b:0]", 10) == [[10, "b"]]  # < 1 never switches: 'to' from the start
    assert sched("[a:b:-3]", 10) == [[10, "b"]]
    assert sched("[a:b:1e1]", 20) == [[10, "a"], [20, "b"]]  # 1e1 has no '.', so it is step 10
    assert sched("[a:b:0.5]", 3) == [[1, "a"], [3, "b"]]  # int(1.5) = 1
    assert sched("[a:b:0.5]", 10, use_old_scheduling=True) == [[5, "a"], [10, "b"]]
    assert sched("[a:b:2.0]", 10, use_old_scheduling=True) == [[2, "a"], [10, "b"]]  # old: ≥ 1 is a step


def test_prompts_the_grammar_rejects_are_used_literally():
    assert sched("a | b [c:2]") == [[10, "a | b [c:2]"]]  # '|' outside an alternation
    assert sched("[a:2] trailing\\") == [[10, "[a:2] trailing\\"]]  # a backslash at the very end
    assert sched("[a|b:3]") == [[10, "[a|b:3]"]]


def test_escaped_characters_stay_escaped_for_the_attention_parser():
    assert sched("\\[a:2\\] [b\\:c:3]") == [[3, "\\[a:2\\] "], [10, "\\[a:2\\] b\\:c"]]


def test_nested_constructs_inside_emphasis_and_alternation():
    assert sched("(a [b:c:2]:1.2)", 4) == [[2, "(a b:1.2)"], [4, "(a c:1.2)"]]
    assert sched("[[a|b]:3]", 4) == [[1, ""], [2, ""], [3, ""], [4, "b"]]


def test_schedule_index_at_follows_a1111_reconstruct_cond_batch():
    schedule = prompt_schedule("a [b:3]", 10)
    assert schedule == [ScheduledText(3, "a "), ScheduledText(10, "a b")]
    assert [schedule_index_at(schedule, k) for k in (0, 1, 3, 4, 10)] == [0, 0, 0, 1, 1]
    assert schedule_index_at(schedule, 11) == 0  # past the end A1111 falls back to the first entry


def test_steps_must_be_positive():
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        prompt_schedule("a", 0)


# ------------------------------------------------------------------------------------- AND and networks


def test_split_and_with_weights():
    assert split_and("cat AND dog :1.2") == [SubPrompt("cat", 1.0), SubPrompt(" dog", 1.2)]
    assert split_and("a:0.5 AND b : -2 AND c") == [
        SubPrompt("a", 0.5),
        SubPrompt(" b", -2.0),
        SubPrompt(" c", 1.0),
    ]
    assert split_and("ANDROID and AND") == [SubPrompt("ANDROID and", 1.0), SubPrompt("", 1.0)]
    assert split_and("a :1.") == [SubPrompt("a", 1.0)] and split_and("a :.5") == [SubPrompt("a", 0.5)]
    assert split_and("(x:1.2)") == [SubPrompt("(x:1.2)", 1.0)]  # ')' after the number: no AND weight


def test_extra_networks_are_removed_and_returned():
    text, tags = extract_extra_networks("a <lora:film grain:0.8> cat, <hypernet:anime:0.5:x=1><lora:b>")
    assert text == "a  cat, "
    assert tags == [
        ExtraNetworkTag("lora", ("film grain", "0.8")),
        ExtraNetworkTag("hypernet", ("anime", "0.5", "x=1")),
        ExtraNetworkTag("lora", ("b",)),
    ]
    assert tags[1].positional == ("anime", "0.5") and tags[1].named == {"x": "1"}
    assert str(tags[0]) == "<lora:film grain:0.8>"
    assert extract_extra_networks("a <not a tag> <:x>") == ("a <not a tag> <:x>", [])


def test_lora_multipliers_follow_the_lora_extension():
    def spec(tag):
        return LoraSpec.from_tag(extract_extra_networks(tag)[1][0])

    assert spec("<lora:a>") == LoraSpec("a", 1.0, 1.0, None)
    assert spec("<lora:a:0.8>") == LoraSpec("a", 0.8, 0.8, None)
    assert spec("<lora:a:0.8:0.3>") == LoraSpec("a", 0.8, 0.3, None)
    assert spec("<lora:a:0.8:0.3:16>") == LoraSpec("a", 0.8, 0.3, 16)
    assert spec("<lora:a:te=0.5:unet=1.5:dyn=8>") == LoraSpec("a", 0.5, 1.5, 8)
    assert spec("<lora:a:0.7:unet=0>") == LoraSpec("a", 0.7, 0.0, None)
    with pytest.raises(PromptSyntaxError, match="not a number"):
        spec("<lora:a:strong>")


def test_parse_prompt_pipeline():
    parsed = parse_prompt("<lora:x:0.5>a [cat:dog:2] AND b :0.5", 4)
    assert parsed.text == "a [cat:dog:2] AND b :0.5"
    assert parsed.subprompts == (SubPrompt("a [cat:dog:2]", 1.0), SubPrompt(" b", 0.5))
    assert parsed.schedules[0] == (ScheduledText(2, "a cat"), ScheduledText(4, "a dog"))
    assert parsed.texts() == ["a cat", "a dog", " b"]
    assert parsed.loras == [LoraSpec("x", 0.5, 0.5, None)]
    negative = parse_prompt("ugly AND blurry", 4, negative=True)
    assert negative.subprompts == (SubPrompt("ugly AND blurry", 1.0),)


def test_construct_next_to_a_stray_bracket_is_read_as_the_construct():
    # A1111's Earley parse of this is ambiguous (its result varies with PYTHONHASHSEED); we pick the construct
    assert sched("[a:1])") == [[1, ")"], [10, "a)"]]
