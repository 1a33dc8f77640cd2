"""NearDedup alone: MinHash-LSH candidates, Jaccard verification against the threshold,
connected components, smallest id survives.

Texts are built from distinct words, so their word-bigram Jaccard is known exactly: a text of
40 words has 39 bigrams, and every word substituted in the middle changes 2 of them
(k substitutions: Jaccard (39 - 2k) / (39 + 2k)).
"""
import os

import apache_beam as beam
import pytest
from apache_beam.testing.util import BeamAssertException, assert_that, equal_to

from curate.pipelines.near_dedup import SIG_CACHE_HITS, SIG_CACHE_MISSES, SIG_CACHE_REJECTED, NearDedup
from curate.pipelines.stage_configs import NearDedupConfig
from tests.pipelines.stage_helpers import document, fnapi_pipeline, run_counting, words

BASE = words(40)


def near_dedup(**settings) -> NearDedup:
    """The stage as `build_curation` makes it: from its typed `near_dedup` config."""
    return NearDedup.from_config(NearDedupConfig(**settings))


def substituted(positions, tag: str) -> str:
    """BASE with the words at `positions` replaced by new words."""
    out = list(BASE)
    for i in positions:
        out[i] = f"{tag}{i:03d}"
    return " ".join(out)


def exact_jaccard(k: int) -> float:
    return (39 - 2 * k) / (39 + 2 * k)


# a chain: d3 ~ d2 (2 substitutions apart, J = 35/43 = 0.81) and d2 ~ d1 (1 more, J = 37/41 =
# 0.90), but d3 and d1 are 3 substitutions apart (J = 33/45 = 0.73 < 0.8)
D3 = document("d3", " ".join(BASE))
D2 = document("d2", substituted([10, 20], "x"))
D1 = document("d1", substituted([10, 20, 30], "x"))
UNRELATED = document("d0", " ".join(words(40, prefix="u")))
FAR = document("d4", substituted([5, 12, 19, 26, 33], "y"))  # J = 29/49 to d3: below everything


def rows_matching(expected):
    """Matcher for dedup rows: ids and method exact, similarity within float tolerance."""
    def check(actual):
        got = sorted((r["removed_id"], r["kept_id"], r["method"], r["similarity"]) for r in actual)
        want = sorted(expected)
        ok = len(got) == len(want) and all(
            g[:3] == w[:3] and g[3] == pytest.approx(w[3], abs=1e-9) for g, w in zip(got, want))
        if not ok:
            raise BeamAssertException(f"dedup rows {got} != {want}")
    return check


def test_chain_collapses_to_the_smallest_id_with_similarity_to_the_survivor():
    p = fnapi_pipeline()
    out = p | beam.Create([D3, D2, D1, UNRELATED, FAR]) | near_dedup(threshold=0.8)
    # survivors pass through unchanged (every field, `_norm` included)
    assert_that(out["documents"], equal_to([D1, UNRELATED, FAR]), label="Survivors")
    # d3 is removed through d2 although its own Jaccard to the survivor d1 is below 0.8; the
    # row reports the Jaccard between the removed document and the survivor
    assert_that(out["dedup"], rows_matching([
        ("d2", "d1", "near", exact_jaccard(1)),
        ("d3", "d1", "near", exact_jaccard(3)),
    ]), label="DedupRows")
    found = run_counting(p)
    assert found.get("removed.near") == 2
    assert found.get("near_dedup.verified_pairs") == 2  # d3-d2 and d2-d1; never d3-d1 (0.73)
    assert found.get("near_dedup.candidate_pairs", 0) >= 2


def test_threshold_decides_which_pairs_are_duplicates():
    # one pipeline, one NearDedup branch per threshold (a pipeline run costs seconds)
    cases = {
        0.85: ["d1", "d3"],  # only d2-d1 (0.90) is a near duplicate
        0.70: ["d1"],  # every pair, d3-d1 (0.73) included
    }
    p = fnapi_pipeline()
    docs = p | beam.Create([D3, D2, D1])
    for threshold, survivors in cases.items():
        out = docs | f"NearDedup{threshold}" >> near_dedup(threshold=threshold)
        assert_that(out["documents"] | f"Ids{threshold}" >> beam.Map(lambda d: d["id"]),
                    equal_to(survivors), label=f"Survivors{threshold}")
        assert_that(out["dedup"] | f"Kept{threshold}" >> beam.Map(lambda r: r["kept_id"]),
                    equal_to(["d1"] * (3 - len(survivors))), label=f"KeptIds{threshold}")
    # counters add up over the branches: 1 + 2 removals
    assert run_counting(p).get("removed.near") == 3


def test_minhash_verification_uses_the_signature_estimate():
    near_copy = document("e2", substituted([39], "z"))  # last word: J = 38/40 = 0.95
    original = document("e1", " ".join(BASE))
    p = fnapi_pipeline()
    out = p | beam.Create([near_copy, original, UNRELATED]) | near_dedup(verify="minhash")
    assert_that(out["documents"] | beam.Map(lambda d: d["id"]), equal_to(["d0", "e1"]), label="Survivors")
    # an estimate over 128 permutations: within a few hundredths of 0.95, a multiple of 1/128
    assert_that(out["dedup"] | beam.Map(lambda r: (r["removed_id"], r["kept_id"], r["method"],
                                                    abs(r["similarity"] - 0.95) < 0.1,
                                                    (r["similarity"] * 128) % 1 == 0)),
                equal_to([("e2", "e1", "near", True, True)]), label="DedupRows")
    p.run().wait_until_finish()


def test_invalid_settings_are_rejected_before_any_pipeline():
    with pytest.raises(ValueError, match="verify"):
        near_dedup(verify="cosine")
    with pytest.raises(ValueError, match="bands and rows"):
        near_dedup(bands=16)
    with pytest.raises(ValueError, match="num_perm"):
        near_dedup(num_perm=64, bands=16, rows=6)
    with pytest.raises(ValueError, match="threshold"):
        near_dedup(threshold=1.0)


def test_signature_cache_is_filled_then_read(tmp_path):
    def run_once():
        p = fnapi_pipeline([f"--curate_cache_dir={tmp_path}"])
        out = p | beam.Create([D3, D2, D1]) | near_dedup(threshold=0.85)
        assert_that(out["documents"] | beam.Map(lambda d: d["id"]), equal_to(["d1", "d3"]))
        return run_counting(p)

    first = run_once()
    assert first.get(SIG_CACHE_MISSES) == 3 and first.get(SIG_CACHE_HITS, 0) == 0
    second = run_once()  # same decisions from cached signatures
    assert second.get(SIG_CACHE_HITS) == 3 and second.get(SIG_CACHE_MISSES, 0) == 0


def _cache_files(folder, suffix=".sig"):
    return sorted(folder.rglob(f"*{suffix}"))


def _run_cached(tmp_path, docs, survivors, **settings):
    p = fnapi_pipeline([f"--curate_cache_dir={tmp_path}"])
    out = p | beam.Create(docs) | near_dedup(**settings)
    assert_that(out["documents"] | beam.Map(lambda d: d["id"]), equal_to(survivors))
    return run_counting(p)


def test_signatures_of_other_formats_are_never_read_and_mentioned_once(tmp_path, capsys):
    """Signatures from 32-bit shingle hashes (v1) or in the Parquet files read whole (v2) live
    in other folders: ignored, with one warning line."""
    from curate.pipelines.near_dedup import cache_folder
    from curate.scorers.minhash import MinHasher

    folder = cache_folder(str(tmp_path), MinHasher(128, 2, 42))
    assert "minhash-v3-p128-s2-seed42" in folder and "minhash-v2" not in folder
    old = tmp_path / "minhash-v2-p128-s2-seed42"
    old.mkdir()
    (old / "sigs-0.parquet").write_bytes(b"an old cache file")
    capsys.readouterr()
    first = _run_cached(tmp_path, [D3, D2, D1], ["d1", "d3"], threshold=0.85)
    assert first.get(SIG_CACHE_MISSES) == 3 and first.get(SIG_CACHE_HITS, 0) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if "earlier format" in line]
    assert len(warned) == 1 and warned[0].startswith("curate run: warning: signature cache ")
    assert (old / "sigs-0.parquet").exists()  # left for the user to delete


def test_a_corrupt_cache_file_is_moved_aside_with_a_warning_and_rebuilt(tmp_path, capsys):
    """A corrupt signature-cache file failed every later run in the workspace (the reliability
    issue's item 6): now each is moved aside when read, and its signatures are recomputed."""
    first = _run_cached(tmp_path, [D3, D2, D1], ["d1", "d3"], threshold=0.85)
    assert first.get(SIG_CACHE_MISSES) == 3
    files = _cache_files(tmp_path)
    assert 1 <= len(files) <= 3  # one file per key partition the three keys fall in
    for good in files:
        good.write_bytes(good.read_bytes()[:-40])  # cut short: the trailer is gone
    garbage = files[0].parent / "part-r0000001-garbage.sig"
    garbage.write_bytes(b"not a cache file at all")
    capsys.readouterr()
    second = _run_cached(tmp_path, [D3, D2, D1], ["d1", "d3"], threshold=0.85)
    assert second.get(SIG_CACHE_HITS, 0) == 0 and second.get(SIG_CACHE_MISSES) == 3  # rebuilt
    assert second.get(SIG_CACHE_REJECTED) == len(files) + 1
    warned = [line for line in capsys.readouterr().err.splitlines() if "signature cache file" in line]
    assert len(warned) == len(files) + 1 and all(
        w.startswith("curate run: warning: ") and "recomputed" in w for w in warned)
    assert {p.name for p in _cache_files(tmp_path, ".corrupt")} == {
        *(f.name + ".corrupt" for f in files), garbage.name + ".corrupt"}
    third = _run_cached(tmp_path, [D3, D2, D1], ["d1", "d3"], threshold=0.85)
    assert third.get(SIG_CACHE_HITS) == 3 and third.get(SIG_CACHE_MISSES, 0) == 0


def _signature_cache(stage, tmp_path):
    from curate.pipelines.near_dedup import cache_folder
    from curate.scorers.signature_cache import SignatureCache

    folder = cache_folder(str(tmp_path), stage.hasher)
    return SignatureCache(folder, stage.hasher.num_perm * 4, folder.rsplit("/", 1)[1])


def test_poisoned_signatures_of_the_right_length_are_rejected_by_their_checksum(tmp_path, capsys):
    """A signature replaced by another text's (right length, wrong content) silently changed
    dedup decisions (the reliability issue's item 6). With verify=minhash the cached signature
    decides alone, so a poisoned entry for d3 that copies d1's signature would remove d3."""
    from curate.pipelines.near_dedup import text_key

    stage = near_dedup(verify="minhash", threshold=0.85)
    key_d3 = text_key(D3["_norm"])
    real_d3 = stage.hasher.signature(D3["_norm"]).tobytes()
    poison = stage.hasher.signature(D1["_norm"]).tobytes()
    assert len(poison) == len(real_d3)
    _signature_cache(stage, tmp_path).put([key_d3], [real_d3])
    (path,) = _cache_files(tmp_path)
    data = path.read_bytes()
    assert data[:len(real_d3)] == real_d3  # row 0 of the only file: d3's signature, then its check
    path.write_bytes(poison + data[len(poison):])  # replaced after its checksum was written
    found = _run_cached(tmp_path, [D3, D1, UNRELATED], ["d0", "d1", "d3"], verify="minhash",
                        threshold=0.85)
    assert found.get(SIG_CACHE_HITS, 0) == 0 and found.get(SIG_CACHE_MISSES) == 3
    assert found.get(SIG_CACHE_REJECTED) == 1
    assert "a row with a wrong checksum" in capsys.readouterr().err
    # control: the same entry with a checksum that matches is trusted (that is what a cache
    # is for), and it does change the decision; so the checksum is what caught it above
    for p in tmp_path.rglob("*"):
        if p.is_file():
            p.unlink()
    _signature_cache(stage, tmp_path).put([key_d3], [poison])
    trusted = _run_cached(tmp_path, [D3, D1, UNRELATED], ["d0", "d1"], verify="minhash",
                          threshold=0.85)
    assert trusted.get(SIG_CACHE_HITS) == 1


def test_documents_whose_32_bit_shingle_hashes_collide_are_not_near_duplicates():
    """1M short documents lost 5 to unrelated ones (Jaccard 1.0) through 32-bit shingle-hash
    collisions (the reliability issue's item 5): here two one-word texts whose old 32-bit
    hashes are equal, through the stage with exact verification."""
    from tests.scorers.test_minhash import _colliding_under_32_bits

    a, b = _colliding_under_32_bits()
    p = fnapi_pipeline()
    out = p | beam.Create([document("c1", a), document("c2", b)]) | near_dedup()
    assert_that(out["documents"] | beam.Map(lambda d: d["id"]), equal_to(["c1", "c2"]))
    assert_that(out["dedup"], equal_to([]), label="NoDedupRows")
    assert run_counting(p).get("removed.near", 0) == 0
