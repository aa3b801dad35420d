"""learned-zh: DESIGN.md section 2 invariants, the artifact, and the train / eval commands."""

from __future__ import annotations

import json
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from splitters import Pipeline, SplitterError, TextBatch, parse_spec
from splitters.learned_model import N_FEATURES, load_artifact, save_artifact
from splitters.learned_zh import DEFAULT_ARTIFACT, LearnedZh

from .conftest import shared_path
from .test_splitter_invariants import FRAGMENTS, char_ends

SPECS = [
    ["learned-zh"],
    ["learned-zh:placement=end"],
    ["learned-zh", "learned-zh:every=2"],
    [
        "learned-zh:placement=end",
        "learned-zh:placement=end,every=2",
        "learned-zh:placement=end,every=4",
    ],
    ["learned-zh", "regex-word-pairs"],
    ["regex-words", "learned-zh"],
]
HAN = (
    "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动"
    "同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自"
    "二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日"
    "那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变"
    "条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总"
    "次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指"
    "几九区强放决西被干做必战先回则任取据处理府研质"
)
MIXED = list(HAN) + list(" \t\r\n\u3000aZé0912.,;!?()，。、；：“”（）《》…—\x00🙂")


@st.composite
def chinese_bytes(draw) -> bytes:
    """Chinese, mixed Chinese/Latin/digits/punctuation, and broken UTF-8."""
    parts = draw(
        st.lists(
            st.one_of(
                st.text(alphabet=HAN, min_size=1, max_size=12).map(str.encode),
                st.text(alphabet=MIXED, max_size=12).map(
                    lambda s: s.encode("utf-8", "surrogatepass")
                ),
                st.sampled_from(FRAGMENTS + [b"\xe4", b"\xe4\xb8\xad"[:2], b"\xa1"]),
                st.binary(max_size=4),
            ),
            max_size=20,
        )
    )
    return b"".join(parts)


def levels(specs: list[str], data: bytes) -> np.ndarray:
    return Pipeline.from_specs(specs).levels_of(data)


# ---- invariants ----------------------------------------------------------------------


@pytest.mark.parametrize("specs", SPECS, ids=lambda s: "+".join(s))
@given(data=chinese_bytes())
def test_no_crash_and_points_only_at_char_ends(specs, data):
    lv = levels(specs, data)
    assert lv.dtype == np.uint8 and len(lv) == len(data)
    assert lv.max(initial=0) <= len(specs)
    assert set(np.flatnonzero(lv).tolist()) <= char_ends(data)


@pytest.mark.parametrize("specs", SPECS, ids=lambda s: "+".join(s))
@settings(max_examples=100)  # each example splits every prefix: 100 keep CI under a minute
@given(data=chinese_bytes())
def test_prefix_stable(specs, data):
    full = levels(specs, data)
    cuts = range(len(data) + 1) if len(data) <= 80 else np.linspace(0, len(data), 40, dtype=int)
    for t in cuts:
        assert levels(specs, data[:t]).tolist() == full[:t].tolist(), t


@pytest.mark.parametrize("specs", SPECS, ids=lambda s: "+".join(s))
@given(data=chinese_bytes())
def test_streaming_equals_batch(specs, data):
    pipe = Pipeline.from_specs(specs)
    assert pipe.streamer().feed(data) == pipe.levels_of(data).tolist()


@pytest.mark.parametrize("specs", SPECS[:4], ids=lambda s: "+".join(s))
@given(docs=st.lists(chinese_bytes(), max_size=5))
def test_batch_of_documents_equals_each_alone(specs, docs):
    pipe = Pipeline.from_specs(specs)
    batch = TextBatch.from_docs(docs)
    together = pipe.levels(batch)
    for i, doc in enumerate(docs):
        expect = pipe.levels_of(doc).tolist()
        assert together[batch.offsets[i] : batch.offsets[i + 1]].tolist() == expect


@given(data=chinese_bytes())
def test_pairs_nest_in_words_by_themselves(data):
    """every=2 / every=4 keep a subset of the word points even before the pipeline
    intersects them, and the pipeline is deterministic."""
    batch = TextBatch.from_docs([data])
    raw = [parse_spec(s).points(batch, None) for s in SPECS[3]]
    for outer, inner in pairwise(raw):
        assert not (inner & ~outer).any()
    assert levels(SPECS[3], data).tolist() == levels(SPECS[3], data).tolist()


def test_numpy_fallback_gives_the_same_points():
    from splitters import regex_family

    data = "我们在2024年使用Apache http服务器，测试了 3 次。\nHello, 世界! 你好……".encode()
    pipe = Pipeline.from_specs(SPECS[2])
    backend = regex_family.BACKEND["name"]
    try:
        regex_family.BACKEND["name"] = "numpy"
        slow = pipe.levels_of(data)
    finally:
        regex_family.BACKEND["name"] = backend
    assert slow.tolist() == pipe.levels_of(data).tolist()


# ---- behaviour on real text ---------------------------------------------------------


def units(spec: str, text: str) -> list[str]:
    data = text.encode()
    lv = Pipeline.from_specs([spec]).levels_of(data)
    cuts = [0, *(np.flatnonzero(lv) + 1).tolist()]
    if cuts[-1] != len(data):
        cuts.append(len(data))
    return [data[a:b].decode() for a, b in pairwise(cuts)]


def test_english_inside_chinese_follows_the_regex_rules():
    text = "我们使用Apache http server测试网络性能。Hello world, 你好"
    for spec in ("learned-zh", "learned-zh:placement=end"):
        u = units(spec, text)
        assert "".join(u) == text
        cuts = np.cumsum([len(x) for x in u])[:-1]
        latin = [c.isascii() and c.isalpha() for c in text]
        for k in cuts:  # never inside a Latin word (next-start may pool at its first letter)
            first_letter = spec == "learned-zh" and not latin[k - 2]
            assert not (latin[k - 1] and latin[k]) or first_letter, (spec, u)
        for word in ("Apache ", "http ", "Hello "):  # the space after a word still pools
            assert text.index(word) + len(word) in cuts, (spec, u)
        assert len(u) >= 8  # and the Chinese is cut into words


def test_cuts_common_chinese_words():
    text = "我们今天去北京大学参观图书馆。"
    # next-start: each unit ends with the first character of the next word
    assert units("learned-zh", text)[:2] == ["我们今", "天去"]
    assert units("learned-zh:placement=end", text)[2:5] == ["今天", "去北京大学", "参观"]


def test_describe_records_the_artifact():
    d = parse_spec("learned-zh").describe()
    assert d["name"] == "learned-zh" and d["options"]["placement"] == "next-start"
    assert len(d["artifact_sha256"]) == 64
    rebuilt = Pipeline.from_descriptions([d])
    assert rebuilt.stages[0].config == parse_spec("learned-zh").config


def test_bad_options_are_clear():
    with pytest.raises(SplitterError, match="placement"):
        parse_spec("learned-zh:placement=middle")
    with pytest.raises(SplitterError, match="every"):
        parse_spec("learned-zh:every=3")
    with pytest.raises(SplitterError, match="not found"):
        parse_spec("learned-zh:path=/nonexistent/model.json")


# ---- artifact -----------------------------------------------------------------------


def test_default_artifact_ships_small_and_documented():
    weights = DEFAULT_ARTIFACT.with_suffix(".safetensors")
    size = DEFAULT_ARTIFACT.stat().st_size + weights.stat().st_size
    assert size < 2 << 20
    meta = json.loads(DEFAULT_ARTIFACT.read_text())
    assert meta["teacher"]["name"] == "jieba"
    assert set(meta["architecture"]["placements"]) == {"end", "next-start"}
    for f in meta["training"]["files"]:
        assert len(f["sha256"]) == 64 and f["licence"] != "unknown"


def _tiny_artifact(tmp_path, bits=10):
    rng = np.random.default_rng(0)
    w = {p: rng.normal(size=N_FEATURES << bits).astype(np.float32) for p in ("end", "next-start")}
    meta = {"architecture": {"type": "hashed-ngram-linear", "bits": bits}, "note": "test"}
    return save_artifact(tmp_path / "tiny", w, {"end": 0.5, "next-start": -0.25}, meta), w


def test_artifact_round_trip(tmp_path):
    path, w = _tiny_artifact(tmp_path)
    model = load_artifact(path)
    assert model.bits == 10 and model.meta["note"] == "test"
    assert model.bias == {"end": 0.5, "next-start": -0.25}
    for p in w:
        assert np.array_equal(model.weights[p], w[p].astype(np.float16).astype(np.float32))
    # it loads by JSON, by weights file, or by folder, and drives the splitter
    for ref in (path, path.with_suffix(".safetensors"), tmp_path):
        s = LearnedZh(path=str(ref), placement="end")
        data = "我们今天去北京大学参观图书馆。".encode()
        assert Pipeline([s]).streamer().feed(data) == Pipeline([s]).levels_of(data).tolist()
    assert not (tmp_path / "tiny.pkl").exists()
    assert b"pickle" not in path.with_suffix(".safetensors").read_bytes()[:200]


def test_tampered_weights_fail_with_a_clear_error(tmp_path):
    path, _ = _tiny_artifact(tmp_path)
    st_path = path.with_suffix(".safetensors")
    raw = bytearray(st_path.read_bytes())
    raw[-3] ^= 0x40
    st_path.write_bytes(bytes(raw))
    with pytest.raises(SplitterError, match=r"tiny\.safetensors: sha256 .* does not match"):
        load_artifact(path)
    with pytest.raises(SplitterError, match="sha256"):
        parse_spec(f"learned-zh:path={path}")


def test_tampered_json_fails_with_a_clear_error(tmp_path):
    path, _ = _tiny_artifact(tmp_path)
    doc = json.loads(path.read_text())
    doc["architecture"]["bits"] = 12  # the hash still matches: the shape check catches it
    path.write_text(json.dumps(doc))
    with pytest.raises(SplitterError, match="shape"):
        load_artifact(path)
    path.write_text("{not json")
    with pytest.raises(SplitterError, match="tiny.json: not a readable artifact"):
        load_artifact(path)
    path.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(SplitterError, match="not a learned splitter artifact"):
        load_artifact(path)


# ---- train / eval commands ---------------------------------------------------------

GOLD = """我们 今天 去 北京 大学 参观 图书馆 。
他 在 学校 里 学习 中文 和 数学 。
今天 天气 很 好 ， 我们 去 公园 散步 。
这 本 书 是 我 的 朋友 送 给 我 的 。
北京 大学 的 图书馆 很 大 。
"""


def test_train_on_gold_text_then_eval(tmp_path):
    from aunet_cli.splitter_cmd import app

    gold = tmp_path / "gold.txt"
    gold.write_text(GOLD * 40, encoding="utf-8")
    runner = CliRunner()
    art = tmp_path / "model"
    res = runner.invoke(
        app,
        ["train", str(gold), "--teacher", "gold", "--out", str(art), "--bits", "12", "-q",
         "--epochs", "3", "--val-every", "5", "--gold", str(gold)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["teacher"]["name"] == "gold"
    assert meta["training"]["files"][0]["sha256"]
    assert meta["metrics"]["next-start"]["validation"]["f1"] > 0.9
    assert "validation F1" in res.output
    res = runner.invoke(
        app,
        ["eval", "--gold", str(gold), "-s", f"learned-zh:path={art}.json", "--format", "json"],
    )
    assert res.exit_code == 0, res.output
    scores = json.loads(res.output)
    assert set(scores) >= {"precision", "recall", "f1", "word_f1", "mb_per_s"}
    assert scores["f1"] > 0.9  # memorised: the training text is the gold text here
    res = runner.invoke(app, ["eval", "--gold", str(gold), "-s", "regex-words"])
    assert res.exit_code == 0 and "regex-words" in res.output


def test_eval_reports_a_missing_gold_file(tmp_path):
    from aunet_cli.errors import AunetError
    from aunet_cli.splitter_cmd import app

    res = CliRunner().invoke(app, ["eval", "--gold", str(tmp_path / "nope.txt")])
    assert isinstance(res.exception, AunetError) and "no such file" in str(res.exception)


def test_sentencepiece_teacher(tmp_path):
    from aunet_cli.splitter_cmd import app

    raw = tmp_path / "raw.txt"
    raw.write_text(GOLD.replace(" ", "") * 40, encoding="utf-8")
    res = CliRunner().invoke(
        app,
        ["train", str(raw), "--teacher", "sentencepiece", "--spm-vocab", "45", "--bits", "10",
         "--out", str(tmp_path / "spm"), "-q", "--placement", "end"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert LearnedZh(path=str(tmp_path / "spm.json"), placement="end").model.weights.keys() == {
        "end"
    }


# ---- against the gold dev set (team machines only) ------------------------------------


def test_gold_dev_f1():
    from splitters import segeval

    gold = shared_path("corpora/zh/ud_gsdsimp/zh_gsdsimp-ud-dev.seg.txt")
    sentences, masks = segeval.read_gold(gold)
    scores = segeval.score(segeval.predicted_boundaries(parse_spec("learned-zh"), sentences), masks)
    assert scores["f1"] >= 0.85, scores


def test_jieba_teacher_splitter():
    pytest.importorskip("jieba")
    s = parse_spec("jieba")
    assert not s.causal
    with pytest.raises(SplitterError, match="not causal"):
        s.streamer()
    data = "我们今天去北京大学。".encode()
    pts = s.points(TextBatch.from_docs([data]), None)
    assert pts[-1] and set(np.flatnonzero(pts).tolist()) <= char_ends(data)


def test_threshold_spans_characters_to_regex_words():
    text = "我们今天去北京大学。Hello world 你好".encode()
    regex = Pipeline.from_specs(["regex-words"]).levels_of(text).tolist()
    assert Pipeline.from_specs(["learned-zh:threshold=1"]).levels_of(text).tolist() == regex
    every_char = units("learned-zh:placement=end,threshold=0", text.decode())
    assert every_char[:9] == list("我们今天去北京大学")
    with pytest.raises(SplitterError, match="threshold"):
        parse_spec("learned-zh:threshold=1.5")


def test_recorded_artifact_must_match_the_installed_weights():
    """A model's splitter stages are rebuilt from their descriptions: other weights than
    the recorded ones would give other pooling points, so that is refused."""
    from splitters import Pipeline, SplitterError

    desc = Pipeline.from_specs(["learned-zh"]).describe()
    assert Pipeline.from_descriptions(desc).describe() == desc
    desc[0]["artifact_sha256"] = "0" * 64
    with pytest.raises(SplitterError, match="recorded with weights sha256 000000000000"):
        Pipeline.from_descriptions(desc)
