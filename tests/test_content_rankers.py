"""Content-first rankers and the evaluation v2 harness, on data whose right answer is known."""

from __future__ import annotations

import copy
import shutil
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pytest
import torch
from test_rankers import _events, dataset, write_content
from torch import nn

from ranker import sequence
from ranker.bprmf import BprMF, BprMfConfig
from ranker.coldstart import ColdSplit, cold_split, item_cold_rows, user_cold_rows
from ranker.data import EVENT_INDEX, MissingContent
from ranker.evaluate import earlier_items, evaluate_model, paired_bootstrap, ranks_by_protocol, scoring_path
from ranker.evaluate import test_rows as rows_to_evaluate
from ranker.popularity import Popularity
from ranker.sasrec import Sasrec, SasrecConfig, SoftmaxLoss, softmax_loss
from ranker.sequence import LstmAttn, LstmAttnConfig, LstmAttnNet
from ranker.training import Dropout, ItemTower, _kmeans, _nearest_centroid, next_item_sequences, not_classes
from warehouse import db, store
from warehouse.errors import ConfigError
from warehouse.schemas import EVENTS
from warehouse.store import Warehouse

FAST = SasrecConfig(max_epochs=30, patience=30, batch=16, lr=3e-3, dropout=0.1, attn_dropout=0.1)
FAST_LSTM = LstmAttnConfig(max_epochs=30, patience=30, batch=256, lr=3e-3, dropout=0.1)


def planted(root, *, with_content: bool = True):
    """Group A users engage with a1-a4, group B with b1-b4; each user's held-out last item is a new
    item of their own group (a5 or b5), never seen in training: only content can tell a5 from b5."""
    wh = Warehouse(root)
    rng = np.random.default_rng(1)
    rows = []
    for group in "ab":
        for u in range(30):
            rows += [(f"{group}{u}", f"{group}{rng.integers(1, 5)}", step) for step in range(10)]
            rows.append((f"{group}{u}", f"{group}5", 10))
    store.append(wh, EVENTS, _events(rows))
    if with_content:
        write_content(wh, {f"{g}{k}": (1.0 if g == "a" else -1.0) for g in "ab" for k in range(1, 6)})
    db.refresh_views(wh)
    return wh


@pytest.fixture(scope="module")
def planted_wh(tmp_path_factory):
    return planted(tmp_path_factory.mktemp("planted"))


def cold_wins(model, data) -> float:
    """Share of test users whose own group's new item outscores the other group's new item."""
    index = {item: i for i, item in enumerate(data.item_ids)}
    test = np.flatnonzero(data.split == "test")
    other = np.array([index["b5" if data.queries.users[r][0] == "a" else "a5"] for r in test])
    scores = model.score_all(data, data.queries.take(test))
    return float(np.mean(scores[np.arange(len(test)), data.targets[test]] > scores[np.arange(len(test)), other]))


def _pair(family: str):
    if family == "sasrec":
        return Sasrec(use_content=True, config=FAST), Sasrec(use_content=False, config=FAST)
    config = FAST_LSTM if family == "lstm-attn" else replace(FAST_LSTM, full_softmax_max=0, negatives=8)  # sampled softmax
    return LstmAttn(use_content=True, config=config), LstmAttn(use_content=False, config=config)


@pytest.fixture(scope="module", params=["sasrec", "lstm-attn", "lstm-attn-sampled"])
def fitted(planted_wh, request):
    """The planted data, and a content model with its id-only twin trained on it (seed 0):
    sasrec-content and sasrec, or lstm-attn and lstm-attn-no-content."""
    data = dataset(planted_wh, max_history=10)
    content, ids = _pair(request.param)
    content.fit(data, seed=0)
    ids.fit(data, seed=0)
    return data, content, ids


def test_only_a_content_model_finds_a_target_that_only_content_identifies(fitted, tmp_path):
    """a5 and b5 are never seen in training, so only content tells them apart. The content model
    prefers each user's own group's new item, follows the content when the two items' vectors are
    swapped, and ignores their id parameters (swapping those changes nothing). The id-only model has
    only its initialisation for them, so it ranks both below every item training held, for every
    user (ranker/training.py unscorable), whatever their id parameters."""
    data, content, ids = fitted
    a5, b5 = data.item_ids.index("a5"), data.item_ids.index("b5")
    assert not data.in_training[a5] and not data.in_training[b5]  # a5 and b5 are test targets only
    assert cold_wins(content, data) >= 0.9, content.name
    swapped = data.content.copy()
    swapped[[a5, b5]] = swapped[[b5, a5]]
    content.save(tmp_path / "content")
    reloaded = type(content)(use_content=True)
    reloaded.load(tmp_path / "content", replace(data, content=swapped))
    assert cold_wins(reloaded, replace(data, content=swapped)) <= 0.1, content.name
    twin = copy.deepcopy(content)
    with torch.no_grad():
        rows = twin.net.items.ids.weight
        rows[[a5, b5]] = rows[[b5, a5]].clone()
    assert cold_wins(twin, data) == pytest.approx(cold_wins(content, data)), content.name
    test = data.queries.take(np.flatnonzero(data.split == "test"))
    trained = np.flatnonzero(data.in_training)
    for scorer in (ids, reloaded_as_saved(ids, data, tmp_path / "ids")):
        scores = scorer.score_all(data, test)
        assert np.isneginf(scores[:, [a5, b5]]).all() and np.isfinite(scores[:, trained]).all(), ids.name
        candidates = np.tile([a5, b5, trained[0]], (len(test), 1))
        np.testing.assert_allclose(scorer.score_items(data, test, candidates), np.take_along_axis(scores, candidates, axis=1), rtol=1e-5)
    assert cold_wins(ids, data) == 0.0


def reloaded_as_saved(model, data, path):
    """`model` saved to `path` and loaded again, as `score` loads it."""
    model.save(path)
    loaded = type(model)(use_content=model.use_content)
    loaded.load(path, data)
    return loaded


def test_a_checkpoint_saved_before_the_trained_record_scores_every_item(fitted, tmp_path):
    """An id-only checkpoint from before 2026-12-06 has no `trained` record: loaded, it scores the
    items no training row held as it did then (finite), not at -inf."""
    data, _, ids = fitted
    ids.save(tmp_path / "new")
    saved = torch.load(tmp_path / "new", weights_only=False)
    del saved["trained"]
    torch.save(saved, tmp_path / "old")
    old = type(ids)(use_content=False)
    old.load(tmp_path / "old", data)
    scores = old.score_all(data, data.queries.take(np.flatnonzero(data.split == "test")))
    assert np.isfinite(scores[:, 1:]).all() and np.isneginf(scores[:, 0]).all()


def test_bpr_mf_ranks_items_no_training_row_holds_last_also_after_a_reload(planted_wh, tmp_path):
    """bpr-mf has nothing but training to place an item by: a5 and b5 (test targets only) score
    -inf for every user, below every trained item, as its saved and reloaded model scores them."""
    data = dataset(planted_wh, max_history=10)
    model = BprMF(BprMfConfig(max_epochs=3, patience=3, batch=64))
    model.fit(data, seed=0)
    test = data.queries.take(np.flatnonzero(data.split == "test"))
    cold = [data.item_ids.index("a5"), data.item_ids.index("b5")]
    model.save(tmp_path / "bpr")
    loaded = BprMF()
    loaded.load(tmp_path / "bpr", data)
    for scorer in (model, loaded):
        scores = scorer.score_all(data, test)
        assert np.isneginf(scores[:, cold]).all() and np.isfinite(scores[:, np.flatnonzero(data.in_training)]).all()
        candidates = np.tile(np.array([cold[0], int(np.flatnonzero(data.in_training)[0])]), (len(test), 1))
        picked = scorer.score_items(data, test, candidates)
        assert np.isneginf(picked[:, 0]).all() and np.isfinite(picked[:, 1]).all()
    saved = torch.load(tmp_path / "bpr", weights_only=False)
    del saved["trained"]  # a checkpoint from before the record: every item scored, as then
    torch.save(saved, tmp_path / "old")
    old = BprMF()
    old.load(tmp_path / "old", data)
    assert np.isfinite(old.score_all(data, test)[:, 1:]).all()


@pytest.mark.parametrize("family", ["sasrec", "lstm-attn"])
def test_a_two_layer_content_projection_learns_the_planted_content_and_reloads(planted_wh, family, tmp_path):
    """content_hidden N: f(c) = W2 GELU(W1 c) (ranker/training.py ItemTower), trained, saved and
    loaded with its config; the cold targets are still found by content alone."""
    data = dataset(planted_wh, max_history=10)
    model = Sasrec(use_content=True, config=replace(FAST, content_hidden=8)) if family == "sasrec" else LstmAttn(config=replace(FAST_LSTM, content_hidden=8))
    model.fit(data, seed=0)
    first, second = model.net.items.proj[0], model.net.items.proj[2]
    assert (first.in_features, first.out_features, second.out_features) == (data.content.shape[1], 8, model.config.dim)
    assert cold_wins(model, data) >= 0.9
    model.save(tmp_path / "model")
    loaded = type(model)(use_content=True)
    loaded.load(tmp_path / "model", data)
    test = data.queries.take(np.flatnonzero(data.split == "test"))
    assert loaded.config.content_hidden == 8
    np.testing.assert_allclose(loaded.score_all(data, test), model.score_all(data, test), rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match="content_hidden"):
        replace(FAST, content_hidden=-1)


def test_new_items_are_scored_by_content_without_retraining(planted_wh, fitted, tmp_path):
    data, model, _ = fitted
    model.save(tmp_path / "model")
    before = model.score_all(data, data.queries.take(np.flatnonzero(data.split == "test")))
    copy = Warehouse(tmp_path / "copy")
    shutil.copytree(planted_wh.home, copy.home)
    write_content(copy, {"a9": 1.0, "b9": -1.0}, seed=5)  # two items arrive after training
    grown = dataset(copy, max_history=10)
    assert grown.n_items == data.n_items + 2
    loaded = type(model)(use_content=True)
    loaded.load(tmp_path / "model", grown)
    test = np.flatnonzero(grown.split == "test")
    scores = loaded.score_all(grown, grown.queries.take(test))
    old = [grown.item_ids.index(i) for i in data.item_ids[1:]]
    np.testing.assert_allclose(scores[:, old], before[:, 1:], rtol=1e-4, atol=1e-4)  # known items: unchanged
    a9, b9 = grown.item_ids.index("a9"), grown.item_ids.index("b9")
    group_a = np.array([grown.queries.users[r][0] == "a" for r in test])
    assert np.isfinite(scores[:, a9]).all()
    assert np.mean(np.where(group_a, scores[:, a9] > scores[:, b9], scores[:, b9] > scores[:, a9])) >= 0.9


def test_kmeans_finds_separated_groups_and_repeats_with_its_seed():
    """ranker/training.py _kmeans, the semantic codes' codebook: three separated groups of points
    give one centroid each (their means), the same again with the same seed; spherical centroids
    are unit vectors."""
    rng = np.random.default_rng(0)
    centres = np.array([[5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0]])
    x = torch.as_tensor(np.concatenate([c + 0.1 * rng.standard_normal((40, 3)) for c in centres]), dtype=torch.float32)
    found = _kmeans(x, 3, torch.Generator().manual_seed(1), spherical=False)
    groups = _nearest_centroid(x, found, spherical=False)
    assert sorted(set(groups[:40].tolist()) | set(groups[40:80].tolist()) | set(groups[80:].tolist())) == [0, 1, 2]
    assert all(len(set(groups[i : i + 40].tolist())) == 1 for i in (0, 40, 80))
    for i in (0, 40, 80):
        np.testing.assert_allclose(found[groups[i]].numpy(), x[i : i + 40].mean(0).numpy(), atol=1e-5)
    assert torch.equal(found, _kmeans(x, 3, torch.Generator().manual_seed(1), spherical=False))
    unit = _kmeans(nn.functional.normalize(x, dim=1), 3, torch.Generator().manual_seed(1), spherical=True)
    np.testing.assert_allclose(unit.norm(dim=1).numpy(), 1.0, rtol=1e-5)
    assert len(_kmeans(x[:2], 3, torch.Generator().manual_seed(1), spherical=False)) == 3  # fewer rows than k: drawn again


@pytest.mark.parametrize("family", ["sasrec", "lstm-attn"])
def test_semantic_codes_give_items_never_seen_in_training_the_codes_of_items_like_them(planted_wh, family, tmp_path):
    """semantic_codes K (ranker/training.py ItemTower): the codebook is built from the items training
    sees; a5 and b5 (test targets only) and items added after training get the coarse code of their
    own group; the code embeddings are part of each item's vector; a reload (the codebook saved, the
    codes assigned again from the warehouse) scores as the trained model; an explanation's replaced
    content gets the codes of that content."""
    data = dataset(planted_wh, max_history=10)
    config = replace(FAST if family == "sasrec" else FAST_LSTM, semantic_codes=2, cold_neighbours=0)  # no borrowing: a replaced content's vectors are exact
    model = Sasrec(use_content=True, config=config) if family == "sasrec" else LstmAttn(config=config)
    model.fit(data, seed=0)
    tower = model.net.items
    index = {item: i for i, item in enumerate(data.item_ids)}
    coarse = {item: int(tower.codes[i, 0]) for item, i in index.items() if item}
    assert {coarse[f"a{k}"] for k in range(1, 6)} != {coarse[f"b{k}"] for k in range(1, 6)}
    assert len({coarse[f"a{k}"] for k in range(1, 6)}) == 1 and len({coarse[f"b{k}"] for k in range(1, 6)}) == 1
    assert not tower.has_code[0] and tower.has_code[1:].all()
    # The codebook is the items training sees (a1-a4, b1-b4), never a5 and b5; a code none of them has starts at zero.
    trained = torch.as_tensor([index[f"{g}{k}"] for g in "ab" for k in range(1, 5)])
    assert torch.equal(tower.has_delta.nonzero().squeeze(1), trained)
    again = _kmeans(nn.functional.normalize(tower.content[trained], dim=1), 2, torch.Generator().manual_seed(0), spherical=True)
    torch.testing.assert_close(tower.centroids[0], again)
    fresh = type(model)(use_content=True, config=replace(config, semantic_codes=3))  # 9 fine codes, 8 trained items
    fresh._build(data)
    fresh.net.items.fit_codes(seed=0)
    codes, fine = fresh.net.items.codes, fresh.net.items.fine.weight
    used = set((codes[trained, 0] * 3 + codes[trained, 1]).tolist())
    assert all(fine[code].any() for code in used) and not any(fine[code].any() for code in set(range(9)) - used)
    assert cold_wins(model, data) >= 0.9
    with torch.no_grad():
        before = tower().clone()
        tower.coarse.weight.mul_(2.0)
        assert not torch.allclose(tower(), before)  # the code embeddings are in the item vectors
        tower.coarse.weight.mul_(0.5)
    a5, b5 = index["a5"], index["b5"]
    swapped = tower.content.clone()
    swapped[[a5, b5]] = swapped[[b5, a5]]
    with torch.no_grad():
        replaced = tower(content=swapped)
    assert int(tower._codes(swapped)[0][a5, 0]) == coarse["b5"]
    model.save(tmp_path / "model")
    twin = type(model)(use_content=True)
    twin.load(tmp_path / "model", replace(data, content=swapped.numpy()))
    np.testing.assert_allclose(twin.net.items().detach().numpy(), replaced.numpy(), rtol=1e-5, atol=1e-6)
    copy = Warehouse(tmp_path / "copy")
    shutil.copytree(planted_wh.home, copy.home)
    write_content(copy, {"a9": 1.0, "b9": -1.0}, seed=5)  # two items arrive after training
    grown = dataset(copy, max_history=10)
    loaded = type(model)(use_content=True)
    loaded.load(tmp_path / "model", grown)
    assert loaded.config.semantic_codes == 2
    assert torch.equal(loaded.net.items.centroids, tower.centroids)
    grown_codes = loaded.net.items.codes
    assert int(grown_codes[grown.item_ids.index("a9"), 0]) == coarse["a1"] and int(grown_codes[grown.item_ids.index("b9"), 0]) == coarse["b1"]
    old = [grown.item_ids.index(i) for i in data.item_ids[1:]]
    test = data.queries.take(np.flatnonzero(data.split == "test"))
    np.testing.assert_allclose(
        loaded.score_all(grown, grown.queries.take(np.flatnonzero(grown.split == "test")))[:, old], model.score_all(data, test)[:, 1:], rtol=1e-4, atol=1e-4
    )
    with pytest.raises(ConfigError, match="semantic_codes"):
        replace(config, semantic_codes=-1)
    with pytest.raises(ConfigError, match="at most 1024"):
        replace(config, semantic_codes=1025)
    with pytest.raises(ConfigError, match="more than the 8 items with content that training sees"):
        type(model)(use_content=True, config=replace(config, semantic_codes=9)).fit(data, seed=0)


def test_an_item_without_a_trained_delta_borrows_its_content_neighbours_mean_at_inference_only():
    """Items 1-2 (near x) and 3-4 (near y) have trained deltas; 5 (near x) and 6 (near y) have none.
    At inference 5 is W c_5 plus the mean of 1's and 2's bounded deltas weighted softmax(cosine /
    temperature) (bounded again by its own W c_5), 6 borrows from 3 and 4; training (a `keep` mask)
    and 0 neighbours give content alone, and the items with a delta are the same either way."""
    torch.manual_seed(0)
    content = np.array([[0, 0, 0], [1, 0, 0], [1, 0.6, 0], [0, 1, 0], [0.6, 1, 0], [1, 0.1, 0.1], [0.1, 1, 0.1]], np.float32)
    data = SimpleNamespace(content=content, scorable=np.linalg.norm(content, axis=1) > 0)  # all the tower reads
    seen = np.array([False, True, True, True, True, False, False])
    tower = ItemTower(6, 4, 3, delta_ratio=0.5, neighbours=2, temperature=0.1)
    alone = ItemTower(6, 4, 3, delta_ratio=0.5, neighbours=0)
    alone.load_state_dict(tower.state_dict())
    for t in (tower, alone):
        t.set_items(data, seen)
    with torch.no_grad():
        base = tower.proj(torch.as_tensor(content))
        raw = tower.ids.weight
        deltas = raw * torch.clamp(0.5 * base.norm(dim=1, keepdim=True) / raw.norm(dim=1, keepdim=True), max=1.0)  # ||delta|| <= 0.5 ||W c||
        expected = base.clone()
        expected[0] = 0  # padding
        expected[1:5] += deltas[1:5]
        for cold, donors in ((5, [1, 2]), (6, [3, 4])):
            cosine = torch.nn.functional.normalize(torch.as_tensor(content[[cold] + donors]), dim=1)
            weights = torch.softmax(cosine[1:] @ cosine[0] / 0.1, dim=0)
            assert 0.6 < weights.max() < 0.9  # both donors count, the nearer more
            borrowed = (weights[:, None] * deltas[donors]).sum(0)
            limit = 0.5 * base[cold].norm()
            expected[cold] += borrowed * min(1.0, float(limit / borrowed.norm()))
        np.testing.assert_allclose(tower().numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
        training = tower(keep=torch.ones(7, dtype=torch.bool))
        np.testing.assert_allclose(training[5:].numpy(), base[5:].numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(alone()[5:].numpy(), base[5:].numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(alone()[:5].numpy(), tower()[:5].numpy(), rtol=1e-6)
        assert not torch.allclose(tower()[5], base[5])


def test_with_borrow_dropped_an_item_whose_delta_a_batch_drops_borrows_from_its_other_trained_neighbours():
    """borrow_dropped: in a training call (a `keep` mask), trained item 1, dropped, is W c_1 plus the
    softmax(cosine / temperature)-weighted mean of the bounded deltas of its 2 nearest *other*
    trained items with content (5 and 2; never itself, never item 6, which has no content), bounded
    by its own W c_1 (short here, so the bound binds); kept items keep their own delta, and without
    borrow_dropped a dropped item is content alone."""
    torch.manual_seed(0)
    content = np.array([[0, 0, 0], [0.1, 0, 0], [1, 0.6, 0], [0, 1, 0], [0.6, 1, 0], [1, 0.1, 0.1], [0, 0, 0]], np.float32)
    data = SimpleNamespace(content=content, scorable=np.linalg.norm(content, axis=1) > 0)
    seen = np.array([False, True, True, True, True, True, True])  # 6: trained id, no content
    tower = ItemTower(6, 4, 3, delta_ratio=0.5, neighbours=2, temperature=0.1, borrow_dropped=True)
    tower.proj.bias.data.zero_()  # W c_1 = 0.1 W e_1: a tenth of its neighbours' length
    plain = ItemTower(6, 4, 3, delta_ratio=0.5, neighbours=2, temperature=0.1)
    plain.load_state_dict(tower.state_dict())
    for t in (tower, plain):
        t.set_items(data, seen)
        t.prepare_training(data)
    assert 6 not in tower.train_donors[1:6].tolist()
    keep = torch.tensor([True, False, True, True, True, True, True])  # item 1's delta dropped
    with torch.no_grad():
        base = tower.proj(torch.as_tensor(content))
        raw = tower.ids.weight
        deltas = raw * torch.clamp(0.5 * base.norm(dim=1, keepdim=True) / raw.norm(dim=1, keepdim=True), max=1.0)
        cosine = torch.nn.functional.normalize(torch.as_tensor(content[[1, 5, 2]]), dim=1)
        weights = torch.softmax(cosine[1:] @ cosine[0] / 0.1, dim=0)  # donors 5 (nearest) and 2
        borrowed = (weights[:, None] * deltas[[5, 2]]).sum(0)
        scale = float(0.5 * base[1].norm() / borrowed.norm())
        assert scale < 1  # the bound binds: forgetting it would fail below
        training = tower(keep=keep)
        np.testing.assert_allclose(training[1].numpy(), (base[1] + borrowed * scale).numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(training[2:].numpy(), (base + deltas)[2:].numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(plain(keep=keep)[1].numpy(), base[1].numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(tower()[1:].numpy(), (base + deltas)[1:].numpy(), rtol=1e-5, atol=1e-6)  # inference: every item has its own


def test_fit_prepares_borrow_dropped_and_refuses_it_without_neighbours(planted_wh):
    """Sasrec.fit builds the training neighbour table (without it borrow_dropped would do nothing),
    and borrow_dropped with cold_neighbours 0 is a ConfigError naming both settings."""
    data = dataset(planted_wh, max_history=10)
    model = Sasrec(use_content=True, config=SasrecConfig(dim=8, heads=1, inner=16, max_epochs=1, borrow_dropped=True, cold_neighbours=3))
    model.fit(data, seed=0)
    items = model.net.items
    trained = items.has_delta & torch.as_tensor(data.scorable)
    assert trained.sum() > 3 and torch.allclose(items.train_weights[trained].sum(1), torch.ones(int(trained.sum())))
    assert not (items.train_donors[trained] == torch.nonzero(trained).squeeze(1)[:, None]).any()  # never itself
    with pytest.raises(ConfigError, match="borrow_dropped borrows from the cold_neighbours nearest items, and cold_neighbours is 0"):
        SasrecConfig(borrow_dropped=True, cold_neighbours=0)


def test_a_checkpoint_from_before_borrowing_keeps_scoring_cold_items_by_content_alone(fitted, tmp_path):
    data, model, _ = fitted
    assert model.config.cold_neighbours > 0  # lstm-attn's since 2026-12-06
    model.save(tmp_path / "model")
    saved = torch.load(tmp_path / "model", weights_only=False)
    del saved["config"]["cold_neighbours"], saved["config"]["cold_temperature"]  # as written before borrowing existed
    torch.save(saved, tmp_path / "older")
    older = type(model)(use_content=True)
    older.load(tmp_path / "older", data)
    assert older.config.cold_neighbours == 0
    cold = np.flatnonzero(~data.in_training & data.scorable)
    assert len(cold)
    with torch.no_grad():
        np.testing.assert_allclose(older.net.items()[cold].numpy(), older.net.items.proj(older.net.items.content[cold]).numpy(), rtol=1e-5, atol=1e-6)
        assert not torch.allclose(model.net.items()[cold], older.net.items()[cold])  # the current model borrows


def test_a_content_ranker_without_content_is_an_error(tmp_path):
    data = dataset(planted(tmp_path / "bare", with_content=False), max_history=10)
    with pytest.raises(MissingContent, match="needs content vectors, and the warehouse has none; run `reelsense extract`"):
        Sasrec(use_content=True, config=FAST).fit(data, seed=0)


def test_softmax_loss_matches_a_hand_computation():
    user = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    items = torch.tensor([[9.0, 9.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # row 0: padding, never a class
    targets = torch.tensor([1, 3])
    # user 0 logits over items 1-3: [1, 0, 1] -> -log(e / (2e + 1)); user 1: [0, 2, 2] -> -log(e^2 / (2e^2 + 1))
    expected = (-np.log(np.e / (2 * np.e + 1)) - np.log(np.e**2 / (2 * np.e**2 + 1))) / 2
    assert softmax_loss(user, items, targets).item() == pytest.approx(expected, rel=1e-6)


def test_softmax_loss_gradients_match_autograd_and_a_reused_buffer_changes_nothing():
    """SoftmaxLoss writes its own backward (softmax - one-hot, in the logits buffer): its loss and
    gradients must be autograd's of logits -> masked columns -> cross_entropy, on calls of several
    sizes through one kept buffer, with withheld items."""
    torch.manual_seed(0)
    excluded = torch.zeros(30, dtype=torch.bool)
    excluded[[5, 7]] = True
    loss_of = SoftmaxLoss(excluded)
    for rows in (12, 40, 7):  # grows, then reuses a larger buffer
        user = torch.randn(rows, 8, dtype=torch.float64, requires_grad=True)
        items = torch.randn(30, 8, dtype=torch.float64, requires_grad=True)
        targets = torch.randint(8, 30, (rows,))
        logits = (user @ items.T).masked_fill(excluded | (torch.arange(30) == 0), float("-inf"))
        expected = torch.nn.functional.cross_entropy(logits, targets)
        want = torch.autograd.grad(2.5 * expected, (user, items))
        got_loss = loss_of(user, items, targets)
        got = torch.autograd.grad(2.5 * got_loss, (user, items))
        assert got_loss.item() == pytest.approx(expected.item(), rel=1e-12)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
        assert (got[1][[0, 5, 7]] == 0).all()  # padding and withheld items: no class, no gradient
    # review: a second call before the first's backward (two loss terms) overwrote the first's softmax
    user, items = torch.randn(9, 8, dtype=torch.float64, requires_grad=True), torch.randn(30, 8, dtype=torch.float64, requires_grad=True)
    first, second = torch.randint(8, 30, (9,)), torch.randint(8, 30, (9,))
    both = loss_of(user, items, first) + 3 * loss_of(user, items, second)
    reference = softmax_loss(user, items, first, excluded) + 3 * softmax_loss(user, items, second, excluded)
    for a, b in zip(torch.autograd.grad(both, (user, items)), torch.autograd.grad(reference, (user, items))):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="a target is padding"):  # review: an infinite loss, and a gradient for a withheld item
        loss_of(user, items, torch.tensor([5] * 9))
    once = loss_of(user, items, first)
    once.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="backward ran twice"):
        once.backward()


def test_dropout_zeroes_a_share_p_and_scales_the_rest_in_training_only():
    torch.manual_seed(0)
    layer, x = Dropout(0.3), torch.ones(200_000)
    out = layer(x)
    assert abs(float((out == 0).float().mean()) - 0.3) < 0.01
    assert torch.allclose(out[out != 0], torch.full_like(out[out != 0], 1 / 0.7))
    layer.eval()
    assert torch.equal(layer(x), x)


def test_sampled_softmax_over_every_item_with_uniform_q_is_the_full_softmax(planted_wh):
    # lstm-attn's sampled loss (target + shared negatives, log-Q corrected, accidental hits removed)
    # must equal the exact softmax when the "sample" is every item and q is uniform.
    data = dataset(planted_wh, max_history=10)
    model = LstmAttn(use_content=True, config=FAST_LSTM)
    model._build(data)
    model.net.eval()
    rows = np.flatnonzero(data.split == "train")[:32]
    vectors = model.net.items()
    states, mask = model.net.encode(vectors, *[torch.as_tensor(a[rows]) for a in (data.queries.hist_items, data.queries.hist_events, data.queries.hist_ratios)])
    targets = torch.as_tensor(data.targets[rows])
    scores, _ = model.net.engage(states, mask, vectors)
    exact = torch.nn.functional.cross_entropy(scores.masked_fill(torch.arange(data.n_items + 1) == 0, float("-inf")), targets)
    sampled = model._sampled_loss(states, mask, vectors, targets, np.arange(1, data.n_items + 1), torch.full((data.n_items + 1,), 0.7))
    assert sampled.item() == pytest.approx(exact.item(), rel=1e-5)
    # For one row, a larger q for its target lowers the target's corrected logit: the loss rises.
    one = (states[:1], mask[:1], vectors, targets[:1], np.arange(1, data.n_items + 1))
    skewed = torch.zeros(data.n_items + 1)
    skewed[targets[0]] = 2.0
    assert model._sampled_loss(*one, skewed).item() > model._sampled_loss(*one, torch.zeros(data.n_items + 1)).item()


@pytest.mark.parametrize("groups", [1, 3, 8])
def test_engage_scores_trimmed_to_real_steps_equal_engage(groups):
    """lstm-attn's training and full ranking run the target attention over each group of rows'
    real steps only (engage_scores): scores and gradients must be engage's, for histories of every
    length (empty ones too), shared targets and per-row targets."""
    torch.manual_seed(0)
    net = LstmAttnNet(30, LstmAttnConfig(dim=8, dropout=0.0), content_dim=0, n_heads=1)
    lengths = torch.tensor([0, 1, 6, 2, 0, 6, 3, 5, 1, 4, 6])
    hist = torch.where(torch.arange(6) >= 6 - lengths[:, None], torch.randint(1, 31, (len(lengths), 6)), 0)  # right-aligned
    events, ratios = torch.where(hist > 0, 2, 0), torch.rand(hist.shape)
    for targets in (torch.randn(7, 8), torch.randn(len(lengths), 4, 8)):
        results = []
        for trimmed in (False, True):
            net.zero_grad()
            wanted = targets.clone().requires_grad_()
            states, mask = net.encode(net.items(), hist, events, ratios)
            scores = net.engage_scores(states, mask, wanted, groups) if trimmed else net.engage(states, mask, wanted)[0]
            (scores * torch.linspace(-1, 1, scores.numel()).view_as(scores)).sum().backward()
            results.append((scores.detach(), wanted.grad, [q.grad.clone() for q in net.parameters() if q.grad is not None]))
        (plain, plain_target, plain_params), (fast, fast_target, fast_params) = results
        assert torch.allclose(fast, plain, atol=1e-5) and torch.allclose(fast_target, plain_target, atol=1e-5)
        assert len(fast_params) == len(plain_params) and all(torch.allclose(a, b, atol=1e-5) for a, b in zip(fast_params, plain_params))


def test_full_ranking_sorted_by_history_length_writes_each_users_scores_to_their_row(planted_wh, monkeypatch):
    """score_all ranks users sorted by history length, in blocks: each user's row must hold engage's
    scores of that user over every item, for histories of mixed lengths across several blocks of
    users and of items."""
    data = dataset(planted_wh, max_history=10)
    model = LstmAttn(use_content=True, config=FAST_LSTM)
    torch.manual_seed(0)
    model._build(data)
    test = np.flatnonzero(data.split == "test")
    queries = data.queries.take(test).cut(np.arange(len(test)) % 11)  # 0 to 10 steps, unsorted
    monkeypatch.setitem(sequence.SCORE_BLOCK, "cpu", (3, 4))
    scores = model.score_all(data, queries)
    with torch.no_grad():
        vectors = model.net.items()
        states, mask = model.net.encode(vectors, *[torch.as_tensor(a) for a in (queries.hist_items, queries.hist_events, queries.hist_ratios)])
        expected = model.net.engage(states, mask, vectors)[0].numpy()
    assert len(set((queries.hist_items > 0).sum(1))) == 11
    assert np.allclose(scores[:, 1:], expected[:, 1:], atol=1e-5) and np.isneginf(scores[:, 0]).all()


def test_sampled_loss_scores_each_behaviour_head_on_the_rows_own_target(tmp_path):
    """With behaviour heads and the sampled softmax, the batch's items are renumbered: a head must
    read each row's own target, not the item at the target's global index (a slip the full softmax,
    whose rows are global, would never show)."""
    wh = Warehouse(tmp_path)
    rng = np.random.default_rng(3)
    table = _events([(f"u{u}", f"i{rng.integers(1, 61)}", step) for u in range(12) for step in range(8)])
    kinds = pa.array(["like" if k % 3 == 0 else "comment" for k in range(table.num_rows)])
    store.append(wh, EVENTS, table.set_column(table.schema.get_field_index("event"), "event", kinds))
    write_content(wh, {f"i{k}": 1.0 if k % 2 else -1.0 for k in range(1, 61)})
    db.refresh_views(wh)
    data = dataset(wh, max_history=10)
    model = LstmAttn(use_content=True, config=replace(FAST_LSTM, full_softmax_max=0, negatives=4, dropout=0.0))
    model._build(data)
    assert len(model.heads) > 1, "the data must give the model a behaviour head"
    inputs = model.loss_inputs(data)
    idx = np.flatnonzero(data.split == "train")[:5]
    keep = torch.ones(data.n_items + 1, dtype=torch.bool)
    loss = model.batch_loss(data, inputs, idx, keep=keep, rng=np.random.default_rng(7))
    # By hand, over every item's vector (global rows) and the same draw of negatives.
    negatives = np.random.default_rng(7).choice(len(inputs.sampling), 4, p=inputs.sampling)
    vectors = model.net.items(keep)
    states, mask = model.net.encode(vectors, *[torch.as_tensor(a[idx]) for a in (data.queries.hist_items, data.queries.hist_events, data.queries.hist_ratios)])
    targets = torch.as_tensor(data.targets[idx])
    own = vectors[targets][:, None]
    given = model.net.given_engaged(states, model.net.engage(states, mask, own)[1], own)[:, 0]
    expected = model._sampled_loss(states, mask, vectors, targets, negatives, inputs.log_q)
    expected = expected + torch.nn.functional.binary_cross_entropy_with_logits(given, inputs.labels[idx])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_masking_removes_earlier_items_but_never_the_target(tmp_path):
    """Everyone watched `hit` early; u0's test target is `x`, and `hit` (the most popular item)
    outranks it unless the history is masked. u1's target is `hit` itself, watched again: masking
    must not remove it."""
    wh = Warehouse(tmp_path)
    rows = [(f"u{u}", "hit", 0) for u in range(6)] + [(f"u{u}", f"f{u}", 1) for u in range(6)]
    rows += [("u0", "x", 2), ("u0", "y", 3), ("u0", "x2", 4)]
    rows += [("u1", "z", 2), ("u1", "y", 3), ("u1", "hit", 4)]
    store.append(wh, EVENTS, _events(rows))
    db.refresh_views(wh)
    data = dataset(wh, max_history=10)
    model = Popularity()
    model.fit(data, seed=0)
    test = np.flatnonzero(data.split == "test")
    ranks = ranks_by_protocol(model, data, test, data.queries.take(test))
    by_user = dict(zip(data.queries.users[test], zip(ranks["unmasked"], ranks["masked"])))
    unmasked, masked = by_user["u0"]
    assert masked < unmasked  # hit (and y) no longer above x2
    assert by_user["u1"][1] == 1.0  # the re-watched target is still ranked, and first


def test_paired_bootstrap_on_a_constructed_case():
    rng = np.random.default_rng(0)
    b = rng.uniform(0, 1, 2000)
    shifted = paired_bootstrap(b + 0.05, b)
    assert shifted["diff"] == pytest.approx(0.05) and shifted["ci95"] == pytest.approx([0.05, 0.05])
    noisy = paired_bootstrap(b + 0.05 + rng.normal(0, 0.2, 2000), b)
    assert noisy["ci95"][0] > 0 and noisy["ci95"][0] < 0.05 < noisy["ci95"][1]
    same = paired_bootstrap(b + rng.normal(0, 0.2, 2000), b, seed=1)
    assert same["ci95"][0] < 0 < same["ci95"][1]
    with pytest.raises(ValueError, match="equal"):
        paired_bootstrap(b, b[:10])


@pytest.mark.parametrize("family", ["sasrec", "lstm-attn", "lstm-attn-sampled"])
def test_items_training_never_sees_are_no_negatives_of_a_content_model_unless_asked(planted_wh, family):
    """a5 and b5 are in no training row. As negatives only, they taught the content projection to score
    content like theirs low (probe: new uploads left every top 20 after a retrain). By default a
    content model's training ignores them: with their content changed, every epoch's loss is the same
    to the bit. With unseen_negatives = true they are negatives again and the losses change; the
    id-only twin keeps them as classes (not_classes, which says which items are left out, leaves none out for it)."""
    data = dataset(planted_wh, max_history=10)
    a5, b5 = data.item_ids.index("a5"), data.item_ids.index("b5")
    changed = data.content.copy()
    changed[[a5, b5]] = -3 * changed[[b5, a5]]
    other = replace(data, content=changed)

    def losses(model_data, **settings):
        model = _pair(family)[0]
        model.config = replace(model.config, max_epochs=2, **settings)
        model.fit(model_data, seed=0)
        return [h["train_loss"] for h in model.history]

    assert losses(data) == losses(other)
    assert losses(data, unseen_negatives=True) != losses(other, unseen_negatives=True)
    assert list(np.flatnonzero(not_classes(data, content=True))) == sorted([a5, b5])
    assert not not_classes(data, content=False).any() and not not_classes(data, content=True, unseen_negatives=True).any()


def test_cold_split_never_trains_on_withheld_items_or_users(planted_wh):
    data = dataset(planted_wh, max_history=10)
    split = cold_split(data, item_share=0.2, user_share=0.1, seed=3)
    train = split.train_data
    fitted = np.isin(train.split, ["train", "valid"])
    assert not split.withheld_items[train.targets[fitted]].any()
    assert not split.withheld_items[train.queries.hist_items[fitted]].any()
    assert not np.isin(train.queries.users[fitted], list(split.withheld_users)).any()
    assert (train.train_counts[split.withheld_items] == 0).all() and not train.in_training[split.withheld_items].any()
    rows = item_cold_rows(data, split)
    assert split.withheld_items[data.targets[rows["cold_targets"]]].all()
    for k, user_rows in user_cold_rows(data, split).items():
        assert ((data.queries.hist_items[user_rows] > 0).sum(1) == k).all()
        assert len(user_rows) == len(split.withheld_users)  # every withheld user has 11 positives


def _prefix_pairs(data) -> list[tuple[tuple[int, ...], int]]:
    """(history, target) of every training row with a history: the pairs RecBole trains on."""
    rows = np.flatnonzero((data.split == "train") & (data.queries.hist_items[:, -1] > 0))
    return sorted((tuple(int(i) for i in data.queries.hist_items[r] if i), int(data.targets[r])) for r in rows)


def _sequence_pairs(data) -> list[tuple[tuple[int, ...], int]]:
    inputs, labels = next_item_sequences(data)
    return sorted((tuple(int(i) for i in inputs[u, : j + 1] if i), int(labels[u, j])) for u, j in zip(*np.nonzero(labels)))


def test_next_item_sequences_hold_the_pairs_of_the_training_rows(planted_wh, tmp_path):
    """sasrec trains many steps of a sequence at once: its labelled (prefix, next item) pairs must
    be exactly those of the training rows (no validation or test target, a bare impression or a
    weak watch context only, events sharing a timestamp never seeing each other, windows cut at
    max_history), and a cold split's withheld items appear nowhere."""
    for window in (12, 4):  # 11 events a user: whole histories, then windows that slide
        data = dataset(planted_wh, max_history=window)
        assert _sequence_pairs(data) == _prefix_pairs(data)
    inputs, _ = next_item_sequences(data)
    assert len(inputs) > len(np.unique(data.queries.users))  # slid windows: rows of their own
    data = dataset(planted_wh, max_history=12)
    split = cold_split(data, item_share=0.2, user_share=0.1, seed=3)
    inputs, labels = next_item_sequences(split.train_data)
    assert not split.withheld_items[inputs].any() and not split.withheld_items[labels[labels > 0]].any()
    assert _sequence_pairs(split.train_data) == _prefix_pairs(split.train_data)
    assert len(inputs) == len(np.unique(split.train_data.queries.users[split.train_data.split == "train"]))

    wh = Warehouse(tmp_path)
    rows = _events(
        [
            ("u0", "a", 0),
            ("u0", "c", 2),
            ("u0", "d", 3),
            ("u0", "w", 4),
            ("u0", "e", 5),
            ("u0", "x", 6),
            ("u0", "y", 6),
            ("u0", "f", 7),
            ("u0", "g", 8),
            ("u0", "h", 9),
        ]
    ).to_pylist()
    rows[3]["event"], rows[3]["watch_ratio"] = "watch", 0.3  # w: watched under half, not a positive
    shown = _events([("u0", "b", 1)]).to_pylist()
    shown[0]["event"] = "impression"
    store.append(wh, EVENTS, pa.Table.from_pylist(rows + shown, schema=EVENTS.schema))
    db.refresh_views(wh)
    data = dataset(wh, max_history=10)
    inputs, labels = next_item_sequences(data)
    name = lambda i: data.item_ids[i] if i else "-"  # noqa: E731
    pairs = [([name(i) for i in inputs[r, : j + 1] if i], name(labels[r, j])) for r, j in zip(*np.nonzero(labels))]
    pairs = [(p[:6] + sorted(p[6:]), t) for p, t in pairs]  # x and y may come in either order after their time
    assert sorted(pairs) == sorted(
        [
            (["a", "b"], "c"),
            (["a", "b", "c"], "d"),
            (["a", "b", "c", "d", "w"], "e"),
            (["a", "b", "c", "d", "w", "e"], "x"),
            (["a", "b", "c", "d", "w", "e"], "y"),  # x and y share a time
            (["a", "b", "c", "d", "w", "e", "x", "y"], "f"),
        ]
    )  # g valid, h test
    assert _sequence_pairs(data) == _prefix_pairs(data)


def test_the_masked_set_is_what_scoring_calls_engaged_not_bare_impressions(tmp_path):
    """u0 was shown `b` (a bare impression) and engaged with a, c, d before the test target e:
    the masked protocol removes a, c and d, as score-batch never recommends them, and keeps b."""
    wh = Warehouse(tmp_path)
    rows = _events([("u0", "a", 0), ("u0", "c", 2), ("u0", "d", 3), ("u0", "e", 4)])
    shown = _events([("u0", "b", 1)]).to_pylist()
    shown[0]["event"] = "impression"
    store.append(wh, EVENTS, pa.concat_tables([rows, pa.Table.from_pylist(shown, schema=EVENTS.schema)]))
    db.refresh_views(wh)
    data = dataset(wh, max_history=10)
    test = np.flatnonzero(data.split == "test")
    assert [data.item_ids[i] for i in data.queries.hist_items[test[0]] if i] == ["a", "b", "c", "d"]
    assert sorted(data.item_ids[i] for i in earlier_items(data, test)[0]) == ["a", "c", "d"]


def test_a_new_users_k_known_interactions_are_engagements_not_impressions(tmp_path):
    """u0 engaged with a, c, d, e, f and was shown b (a bare impression) between a and c: the row
    that knows 2 interactions predicts d from a and c (b is context, not an interaction), and each
    k has exactly one row for the user."""
    wh = Warehouse(tmp_path)
    rows = _events([("u0", "a", 0), ("u0", "c", 2), ("u0", "d", 3), ("u0", "e", 4), ("u0", "f", 5)])
    shown = _events([("u0", "b", 1)]).to_pylist()
    shown[0]["event"] = "impression"
    store.append(wh, EVENTS, pa.concat_tables([rows, pa.Table.from_pylist(shown, schema=EVENTS.schema)]))
    db.refresh_views(wh)
    data = dataset(wh, max_history=10)
    by_k = user_cold_rows(data, ColdSplit(data, np.zeros(data.n_items + 1, bool), {"u0"}))
    for k, target in zip((1, 2, 3), "cde"):
        (row,) = by_k[k]
        assert data.item_ids[data.targets[row]] == target
        known = [data.item_ids[i] for i, e in zip(data.queries.hist_items[row], data.queries.hist_events[row]) if i and e != EVENT_INDEX["impression"]]
        assert len(known) == k and known[0] == "a"
    assert len(by_k[5]) == 0  # f follows only 4 engagements


def test_the_scoring_path_recalls_by_content_and_the_content_model_serves_it(fitted):
    """score-batch's path on the planted data: each user's own group's new item is the most
    similar item they have not engaged with, so 3 similarity candidates always hold it, whichever
    model re-ranks them; the content model puts it first. (The id-only model ranks it last: the
    test above.)"""
    data, content, ids = fitted
    rows = np.flatnonzero(data.split == "test")
    models = (("content", content), ("ids", ids))
    served = {name: scoring_path(model, data, rows, n_candidates=3, k=1, retrieval="similarity") for name, model in models}
    assert served["content"]["candidate_recall"] == served["ids"]["candidate_recall"] == 1.0
    assert served["content"]["hr@1"] >= 0.8, served


def test_the_default_scoring_path_serves_what_the_masked_protocol_ranks(fitted):
    """score-batch's default retrieval is the model's own ranking with engaged items removed, so a
    target's place in what it writes is its rank under the masked protocol (a repeated target: a
    miss), for every model (the id-only model's targets here are items no training row holds, at
    -inf: never served, and last in the ranks)."""
    data, content, ids = fitted
    rows = np.flatnonzero(data.split == "test")
    seen = earlier_items(data, rows)
    repeat = np.array([t in s for s, t in zip(seen, data.targets[rows])])
    for model in (content, ids):
        masked = ranks_by_protocol(model, data, rows, data.queries.take(rows), seen=seen)["masked"]
        served = scoring_path(model, data, rows, n_candidates=5, k=3, retrieval="model")
        expected = np.where(repeat | (masked > 3), 0.0, 1 / np.log2(masked + 1))
        assert served["retrieval"] == "model" and served["ndcg@3"] == pytest.approx(expected.mean()), model.name
        assert served["candidate_recall"] == pytest.approx(np.mean(~repeat & (masked <= 5))), model.name


class _Oracle:
    """Knows each test target: ranks it first for group A users, and third for group B users, below
    the two newest items of their own history (so that masking the history lifts it to first)."""

    name, probabilistic, version, heads = "oracle", False, "", ["engage"]

    def __init__(self, data) -> None:
        test = np.flatnonzero(data.split == "test")
        self.target = dict(zip(data.queries.users[test], data.targets[test]))

    def score_all(self, data, queries):
        scores = np.zeros((len(queries), data.n_items + 1), np.float32)
        for q, user in enumerate(queries.users):
            scores[q, self.target[user]] = 10.0
            if user.startswith("b"):
                newest = list(dict.fromkeys(queries.hist_items[q][::-1][queries.hist_items[q][::-1] > 0]))[:2]
                scores[q, newest] = 20.0
        scores[:, 0] = -np.inf
        return scores

    def score_items(self, data, queries, items):
        return np.take_along_axis(self.score_all(data, queries), items, 1)


def test_evaluate_and_its_slices_on_a_known_answer(planted_wh):
    """Every test target (a5 or b5) is a natural cold item; the oracle puts it at rank 1 for the 30 A
    users and rank 3 for the 30 B users: NDCG@10 (1 + 1/log2(4)) / 2 = 0.75 unmasked, 1.0 masked."""
    data = dataset(planted_wh, max_history=10)
    rows = rows_to_evaluate(data, max_users=None, seed=0)
    metrics, ranks = evaluate_model(_Oracle(data), data, rows, seed=0)
    assert len(rows) == 60 and sorted(set(ranks["unmasked"].tolist())) == [1.0, 3.0]
    unmasked, masked = metrics["unmasked"], metrics["masked"]
    assert unmasked["overall"]["ndcg@10"] == pytest.approx(0.75) and unmasked["overall"]["hr@10"] == 1.0
    assert masked["overall"]["ndcg@10"] == pytest.approx(1.0)
    assert unmasked["natural_cold_items"]["users"] == 60 and unmasked["warm_items"]["users"] == 0
    assert unmasked["natural_cold_items"]["ndcg@10"] == pytest.approx(0.75)
