"""The verdict on a retrain (singtalk.verdict): the rules, the tolerance, force, the table. No model needed."""

from __future__ import annotations

import pytest

from singtalk.verdict import TABLE_COLUMNS, Part, Tolerance, judge

S, T, N = "singing", "talking", "no_voice"


def part(key, truth, before, after, sources=None):
    return Part.build(key, truth, before, after, sources=sources, paths=[f"/clips/{key}/{i}.wav" for i in range(len(truth))])


def good_parts():
    """The held-aside mistakes and the labelled set improve; nothing else moves."""
    return [part("original_test", [S, S, T, T], [S, S, T, T], [S, S, T, T], ["a", "b", "a", "b"]),
            part("held_aside", [T, T], [S, S], [T, S]),
            part("labelled", [S, T, T, T, S], [S, S, S, T, S], [S, T, T, T, S], ["a", "a", "b", "b", "b"])]


@pytest.mark.parametrize("n, allowed", [(0, 1), (5, 1), (150, 1), (200, 2), (1303, 13)])
def test_tolerance_is_one_clip_or_one_point_whichever_is_more(n, allowed):
    assert Tolerance().allowed(n) == allowed
    assert Tolerance(clips=0, points=10).allowed(25) == 2


def test_better_everywhere_is_promoted_and_the_table_counts_fixed_and_broken():
    verdict = judge(good_parts())
    assert verdict.passed and verdict.promoted and not verdict.forced and not verdict.failures
    assert verdict.headline.startswith("Promoted")
    table = verdict.table()
    assert list(table.columns) == TABLE_COLUMNS
    whole = table[(table["set"] == "labelled set") & (table["group"] == "all")].iloc[0]
    assert (whole["n"], whole["errors before"], whole["errors after"], whole["fixed"], whole["broken"]) == (5, 2, 0, 2, 0)
    assert set(table[table["set"] == "labelled set"]["group"]) == {"all", "class Singing", "class Talking",
                                                                    "source a", "source b"}
    assert {c["change"] for c in verdict.changed} == {"fixed"} and len(verdict.changed) == 3
    assert "labelled set improved: 2 → 0 errors of 5 clips (fixed 2, broke 0)" in verdict.reason


def test_more_errors_on_the_labelled_set_is_refused_in_plain_words():
    parts = good_parts()
    parts[2] = part("labelled", [S, T, T, T, S], [S, S, T, T, S], [T, T, S, S, T])
    verdict = judge(parts)
    assert not verdict.passed and not verdict.promoted
    assert verdict.headline.startswith("Not promoted: the serving model stays")
    assert "The labelled set did not improve: 1 → 4 errors of 5 clips (fixed 1, broke 4)." in verdict.failures
    assert "Class Singing in the labelled set got worse: 0 → 2 errors of 2 (at most 1 more allowed)." in verdict.failures
    assert verdict.reason == " ".join(verdict.failures)
    assert "Not promoted" in verdict.text() and "broken" in verdict.text()


def test_same_errors_is_no_gain_and_held_aside_must_improve():
    parts = good_parts()
    parts[1] = part("held_aside", [T, T], [S, S], [S, S])
    verdict = judge(parts)
    assert not verdict.promoted
    assert verdict.failures == ["The mistakes held aside did not improve: 2 → 2 errors of 2 clips (fixed 0, broke 0); "
                                "no gain."]


def test_a_source_worse_beyond_tolerance_is_refused_even_when_the_total_improves():
    truth = [T] * 10 + [S] * 4
    before = [S] * 10 + [S] * 4    # ten talking clips wrong, four singing right
    after = [T] * 10 + [T, T, S, S]  # all ten fixed, two of source x broken
    sources = ["y"] * 10 + ["x"] * 4
    parts = [part("labelled", truth, before, after, sources), part("held_aside", [T], [S], [T])]
    verdict = judge(parts)
    assert not verdict.promoted
    assert "Source x in the labelled set got worse: 0 → 2 errors of 4 (at most 1 more allowed)." in verdict.failures
    assert judge(parts, tolerance=Tolerance(clips=2)).promoted, "a looser tolerance accepts it"


def test_one_clip_worse_is_within_the_default_tolerance():
    parts = good_parts()
    parts[0] = part("original_test", [S, S, T, T], [S, S, T, T], [T, S, T, T], ["a", "b", "a", "b"])
    verdict = judge(parts)
    assert verdict.promoted, verdict.failures
    assert "worse" in set(verdict.table()["change"])


def test_force_promotes_and_says_it_overrode_the_verdict():
    parts = good_parts()
    parts[2] = part("labelled", [S, T], [S, T], [T, S])
    verdict = judge(parts, force=True)
    assert verdict.promoted and verdict.forced and not verdict.passed
    assert verdict.headline.startswith("Promoted by force, overriding the verdict")
    assert verdict.reason.startswith("promoted by force, overriding the verdict: The labelled set did not improve")


def test_without_a_labelled_set_or_held_aside_mistakes_the_reviews_decide_and_nothing_is_no():
    test = part("original_test", [S, T], [S, T], [S, T])
    assert judge([test, part("reviews", [T, T], [S, S], [T, T])]).promoted
    verdict = judge([test])
    assert not verdict.promoted and "Nothing shows a gain" in verdict.reason
    assert "No labelled set to measure on." in verdict.passes


def test_three_classes_and_to_dict():
    parts = [part("labelled", [N, N, S], [S, N, S], [N, N, S]), part("held_aside", [N], [S], [N])]
    verdict = judge(parts)
    assert verdict.promoted and "class No voice" in set(verdict.table()["group"])
    data = verdict.to_dict()
    assert data["reasons"] == verdict.reasons and data["tolerance"] == {"clips": 1, "points": 1.0}


def test_known_labels_take_the_reviewers_label_and_leave_out_what_cannot_be_judged(tmp_path):
    """review.read_known_labels (the labelled set a retrain is judged on) and review.confirmed_reviews."""
    import pandas as pd

    from singtalk import review

    clips = tmp_path / "clips"
    clips.mkdir()
    for name in "abcdef":
        (clips / f"{name}.wav").write_bytes(b"x")
    wrong = tmp_path / "wrong_audios.csv"
    for name, label in [("a", T), ("b", S), ("c", T)]:
        review.add_report(wrong, clips / f"{name}.wav", label=label, predicted=N if label != N else S,
                          confidence=0.9, model_version="v")
    review.review_row(wrong, clips / "a.wav", action="relabel", label=S, reviewer="ana")
    review.review_row(wrong, clips / "b.wav", action="dismiss", reviewer="ana")
    predictions = pd.DataFrame({"path": ["clips/a.wav", "clips/b.wav", "clips/c.wav", "clips/d.wav",
                                         "clips/e.wav", "clips/f.wav", "clips/gone.wav"],
                                "label": [T, S, T, "rap", S, T, S],
                                "error": ["", "", "", "", "", "cannot decode", ""],
                                "source": ["x", "x", "", "x", "y", "y", "y"]})
    csv = tmp_path / "wrong_audios.predictions.csv"
    predictions.to_csv(csv, index=False)
    known, skipped = review.read_known_labels(csv, review.read_wrong(wrong), [S, T])
    assert list(known["path"]) == [str((clips / f"{n}.wav").resolve()) for n in "ace"]
    assert list(known["label"]) == [S, T, S], "the reviewer's label wins; an open report's does not"
    assert list(known["source"]) == ["x", "clips", "y"], "no source given: the folder's name"
    assert skipped == {"failed": 1, "dismissed": 1, "unknown_label": 1, "missing_file": 1}
    reviews = review.confirmed_reviews(review.read_wrong(wrong), [S, T])
    assert list(reviews["path"]) == [str((clips / "a.wav").resolve())] and list(reviews["label"]) == [S]
