"""Prompt sets, patching sites, path and attribution patching, backward hooks and weight-based
circuits, against hand computations on tiny random models."""

import json

import pytest
import torch
import torch.nn.functional as F
from interp_testing import random_model

from gptlab.errors import GptlabError
from gptlab.interp import circuits, patching_sites, prompt_sets, set_metrics
from gptlab.interp.attribution import direct_logit_attribution
from gptlab.tokenizers.base import CharTokenizer, GPT2Tokenizer

CHARS = CharTokenizer.from_text("abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ,.")


def char_model(**overrides):
    return random_model(vocab_size=CHARS.vocab_size, block_size=64, n_layer=2, **overrides)


def small_set(model, n=3):
    return prompt_sets.ioi_prompt_set(model, CHARS, n, template=2, seed=1)


# ---- prompt sets ---------------------------------------------------------------------------------


def test_ioi_names_are_single_tokens_in_each_tokenizer():
    names, spaced = prompt_sets.single_token_names(GPT2Tokenizer())
    assert spaced and "Mary" in names
    rows = prompt_sets.ioi_rows(GPT2Tokenizer(), 5, seed=3)
    assert all(len(GPT2Tokenizer().encode(r["answer"])) == 1 for r in rows)
    letters, spaced = prompt_sets.single_token_names(CHARS)
    assert not spaced and letters[:3] == ["A", "B", "C"]
    row = prompt_sets.ioi_rows(CHARS, 1)[0]
    # the answer (the indirect object, named once) follows the prompt's trailing space
    assert row["clean"].endswith(" ") and row["clean"].count(row["answer"]) == 1
    assert row["clean"].count(row["wrong"]) == 2 and row["corrupted"].count(row["wrong"]) == 1


def test_prompt_set_file_round_trip_and_bad_rows(tmp_path):
    model = char_model()
    rows = prompt_sets.ioi_rows(CHARS, 4)
    path = tmp_path / "set.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    loaded = prompt_sets.load_prompt_set(model, CHARS, path)
    assert loaded.texts == rows and loaded.clean.shape == (4, len(rows[0]["clean"]))
    bad = dict(rows[0], corrupted=rows[0]["corrupted"] + "x")
    path.write_text(json.dumps(bad))
    with pytest.raises(GptlabError, match="row 1: corrupted is .* must have"):
        prompt_sets.load_prompt_set(model, CHARS, path)
    path.write_text(json.dumps(dict(rows[0], answer="ab")))
    with pytest.raises(GptlabError, match="not one token"):
        prompt_sets.load_prompt_set(model, CHARS, path)
    path.write_text(json.dumps({"clean": "ab"}))
    with pytest.raises(GptlabError, match="missing or empty: corrupted, answer, wrong"):
        prompt_sets.load_prompt_set(model, CHARS, path)


def test_logit_diff_by_hand():
    model = char_model()
    prompts = small_set(model)
    logits, _ = model(prompts.clean)
    for row in range(len(prompts)):
        expected = logits[row, -1, prompts.answers[row]] - logits[row, -1, prompts.wrongs[row]]
        assert torch.isclose(prompts.logit_diff(logits)[row], expected)


def test_set_attribution_terms_sum_to_the_mean_logit_difference():
    model = char_model()
    prompts = small_set(model)
    result = set_metrics.set_logit_attribution(model, prompts)
    logits, _ = model(prompts.clean)
    assert result.logit_diff == pytest.approx(float(prompts.logit_diff(logits).mean()), abs=1e-4)
    assert result.total() == pytest.approx(result.logit_diff, abs=1e-4)
    # a head's term is its answer attribution minus its wrong-answer attribution, averaged
    a = direct_logit_attribution(model, prompts.clean[:1], int(prompts.answers[0])).heads[1, 2]
    w = direct_logit_attribution(model, prompts.clean[:1], int(prompts.wrongs[0])).heads[1, 2]
    heads = [
        direct_logit_attribution(model, prompts.clean[i : i + 1], int(prompts.answers[i])).heads
        - direct_logit_attribution(model, prompts.clean[i : i + 1], int(prompts.wrongs[i])).heads
        for i in range(3)
    ]
    assert float(heads[0][1, 2]) == pytest.approx(float(a - w))
    assert torch.allclose(result.heads, torch.stack(heads).mean(0).float(), atol=1e-5)


def test_set_ablation_matches_zeroing_the_head_by_hand():
    model = char_model()
    prompts = small_set(model)
    result = set_metrics.set_head_ablation(model, prompts, "zero")

    def zero_head(z, name):
        z = z.clone()
        z[:, :, 3] = 0
        return z

    with model.hooks({"blocks.0.attn.hook_z": zero_head}):
        logits, _ = model(prompts.clean)
    assert float(result.ablated[0, 3]) == pytest.approx(
        float(prompts.logit_diff(logits).mean()), abs=1e-5
    )


# ---- patching sites ------------------------------------------------------------------------------


def test_patching_a_whole_site_restores_the_clean_metric_and_a_position_matches_by_hand():
    model = char_model()
    prompts = small_set(model)
    result = patching_sites.patch_site(model, prompts, "resid_pre", progress=False)
    T = prompts.clean.shape[1]
    assert result.metric.shape == (2, T)
    # the last layer's final position carries everything the last logits read... except what
    # attention reads from earlier positions; layer 0 at a position where the prompts agree:
    same = (prompts.clean == prompts.corrupted).all(dim=0)
    assert torch.allclose(result.metric[0, same], torch.tensor(result.corrupted_metric), atol=1e-5)
    # mlp_out of the last layer at the last position, by hand: logits = lm_head(ln_f(resid))
    mlp = patching_sites.patch_site(model, prompts, "mlp_out", progress=False)
    _, clean_cache = model.run_with_cache(prompts.clean, names=["blocks.1.hook_mlp_out"])
    _, cache = model.run_with_cache(
        prompts.corrupted, names=["blocks.1.hook_mlp_out", "blocks.1.hook_resid_post"]
    )
    resid = cache["blocks.1.hook_resid_post"][:, -1] + (
        clean_cache["blocks.1.hook_mlp_out"][:, -1] - cache["blocks.1.hook_mlp_out"][:, -1]
    )
    logits = model.lm_head(model.ln_f(resid))[:, None]
    assert float(mlp.metric[1, -1]) == pytest.approx(
        float(prompts.logit_diff(logits).mean()), abs=1e-4
    )


@pytest.mark.parametrize(
    "site", ["z", "q", "k", "v", "pattern", "z_position", "attn_out", "resid_mid"]
)
def test_each_head_site_patches_only_its_head(site):
    model = char_model()
    prompts = small_set(model, n=2)
    result = patching_sites.patch_site(model, prompts, site, progress=False)
    T = prompts.clean.shape[1]
    expected = {"z_position": (2, 4, T), "attn_out": (2, T), "resid_mid": (2, T)}.get(site, (2, 4))
    assert result.metric.shape == expected
    # by hand for one patch: head 1 of layer 1 (position 3 for z_position, position 3 otherwise)
    name = patching_sites.hook_name(site, 1)
    index = patching_sites.site_index(site, 1, 3)
    _, clean = model.run_with_cache(prompts.clean, names=[name])

    def patch(x, _):
        x = x.clone()
        x[index] = clean[name][index]
        return x

    with model.hooks({name: patch}):
        logits, _ = model(prompts.corrupted)
    got = (
        result.metric[1, 1, 3]
        if site == "z_position"
        else result.metric[1, 3 if site in ("attn_out", "resid_mid") else 1]
    )
    assert float(got) == pytest.approx(float(prompts.logit_diff(logits).mean()), abs=1e-5)


def test_path_patching_from_a_silent_sender_does_nothing_and_into_v_matches_by_hand():
    model = char_model()
    prompts = small_set(model)
    with torch.no_grad():  # head 2 of layer 0 writes nothing: its W_O slice is zero
        model.blocks[0].attn.c_proj.weight[:, 16:24] = 0
    result = patching_sites.path_patching(model, prompts, (1, 0), "v", progress=False)
    assert result.metric.shape == (1, 4)
    assert float(result.metric[0, 2]) == pytest.approx(result.corrupted_metric, abs=1e-5)
    # by hand: receiver L1H0's values computed from resid_pre(corrupted) + sender's write change
    names = ["blocks.0.attn.hook_z", "blocks.1.hook_resid_pre"]
    _, clean = model.run_with_cache(prompts.clean, names=names)
    _, corrupted = model.run_with_cache(prompts.corrupted, names=names)
    w_o = model.blocks[0].attn.c_proj.weight[:, 8:16]  # sender head 1
    delta = (clean[names[0]][:, :, 1] - corrupted[names[0]][:, :, 1]) @ w_o.T
    block = model.blocks[1]
    x = block.ln_1(corrupted[names[1]] + delta)
    v = F.linear(x, block.attn.c_attn.weight[2 * 32 : 2 * 32 + 8], block.attn.c_attn.bias[64:72])

    def replace(value, _):
        value = value.clone()
        value[:, 0] = v
        return value

    with model.hooks({"blocks.1.attn.hook_v": replace}):
        logits, _ = model(prompts.corrupted)
    assert float(result.metric[0, 1]) == pytest.approx(
        float(prompts.logit_diff(logits).mean()), abs=1e-5
    )
    with pytest.raises(GptlabError, match="layer 1 or later"):
        patching_sites.path_patching(model, prompts, (0, 1), "q")


def test_attribution_patching_is_the_first_order_estimate_and_ranks_like_real_patching():
    model = random_model(vocab_size=CHARS.vocab_size, block_size=64, n_layer=2)
    with torch.no_grad():  # a gentler model: the linear estimate should then rank well
        for p in model.parameters():
            p.mul_(0.3)
    prompts = small_set(model)
    result = patching_sites.compare_attribution_patching(model, prompts, progress=False)
    assert result.rank_correlation > 0.5
    # by hand for one head: grad of the mean logit diff w.r.t. z (autograd on a leaf) . delta z
    name = "blocks.1.attn.hook_z"
    _, clean = model.run_with_cache(prompts.clean, names=[name])
    _, corrupted = model.run_with_cache(prompts.corrupted, names=[name])
    leaf = corrupted[name].clone().requires_grad_(True)
    with torch.enable_grad(), model.hooks({name: lambda z, _: leaf}):
        logits, _ = model(prompts.corrupted)
        (grad,) = torch.autograd.grad(prompts.logit_diff(logits).mean(), leaf)
    estimate = result.estimate.corrupted_metric + float(
        (grad * (clean[name] - corrupted[name]))[:, :, 2].sum()
    )
    assert float(result.estimate.metric[1, 2]) == pytest.approx(estimate, abs=1e-4)


def test_spearman_by_hand():
    a = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert patching_sites.spearman(a, a * 10) == pytest.approx(1.0)
    assert patching_sites.spearman(a, -a) == pytest.approx(-1.0)
    # ranks [0, 1, 2, 3] vs [1.5, 1.5, 0, 3]: Pearson of the ranks
    assert patching_sites.spearman(a, torch.tensor([5.0, 5.0, 1.0, 9.0])) == pytest.approx(
        0.3162, abs=1e-4
    )


# ---- backward hooks ------------------------------------------------------------------------------


def test_gradients_at_hook_points_match_autograd_and_the_softmax_formula():
    model = char_model()
    idx = torch.randint(0, CHARS.vocab_size, (2, 10), generator=torch.Generator().manual_seed(0))
    targets = torch.roll(idx, -1, dims=1)

    def loss_fn(logits):
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))

    names = ["hook_logits", "blocks.1.hook_resid_post", "blocks.0.attn.hook_z"]
    loss, cache, grads = model.run_with_grads(idx, loss_fn, names)
    # d CE / d logits = (softmax - onehot) / N, by hand
    probs = cache["hook_logits"].softmax(-1)
    expected = (probs - F.one_hot(targets, probs.shape[-1])) / targets.numel()
    assert torch.allclose(grads["hook_logits"], expected, atol=1e-6)
    # the final residual stream, by autograd on a leaf through ln_f and lm_head
    resid = cache["blocks.1.hook_resid_post"].clone().requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(loss_fn(model.lm_head(model.ln_f(resid))), resid)
    assert torch.allclose(grads["blocks.1.hook_resid_post"], g, atol=1e-6)
    # z of layer 0, through the rest of the model: autograd on a leaf substituted at the hook
    z = cache["blocks.0.attn.hook_z"].clone().requires_grad_(True)
    with torch.enable_grad(), model.hooks({"blocks.0.attn.hook_z": lambda _, __: z}):
        logits, _ = model(idx)
        (g,) = torch.autograd.grad(loss_fn(logits), z)
    assert torch.allclose(grads["blocks.0.attn.hook_z"], g, atol=1e-6)
    assert not any(p.requires_grad for p in model.parameters())  # the model stays frozen


def test_a_backward_hook_can_replace_the_gradient():
    model = char_model(tie_weights=False)  # so the embedding's only gradient is through hook_embed
    idx = torch.randint(0, CHARS.vocab_size, (1, 6), generator=torch.Generator().manual_seed(1))
    seen = []
    embed = model.wte.weight.requires_grad_(True)
    with (
        torch.enable_grad(),
        model.backward_hooks({"hook_embed": lambda g, name: seen.append(name) or g * 0}),
    ):
        logits, _ = model(idx)
        logits.sum().backward()
    assert seen == ["hook_embed"] and torch.count_nonzero(embed.grad) == 0


# ---- weight-based circuits -----------------------------------------------------------------------


def test_factored_matrix_norm_and_eigenvalues_match_the_dense_matrix():
    g = torch.Generator().manual_seed(0)
    m = circuits.FactoredMatrix(
        torch.randn(12, 3, generator=g, dtype=torch.float64),
        torch.randn(3, 12, generator=g, dtype=torch.float64),
    )
    dense = m.dense()
    assert float(m.norm()) == pytest.approx(float(torch.linalg.norm(dense)))
    big = torch.linalg.eigvals(dense)
    big = big[big.abs() > 1e-8]
    small = m.eigenvalues()
    assert torch.allclose(big.abs().sort().values, small.abs().sort().values, atol=1e-8)
    assert circuits.copying_score(circuits.FactoredMatrix(torch.eye(4), torch.eye(4))) == 1.0


def test_head_weights_reproduce_the_models_queries_and_head_writes():
    model = char_model()
    idx = torch.randint(0, CHARS.vocab_size, (1, 8), generator=torch.Generator().manual_seed(2))
    _, cache = model.run_with_cache(
        idx, names=["blocks.1.hook_resid_pre", "blocks.1.attn.hook_q", "blocks.1.attn.hook_v"]
    )
    x = cache["blocks.1.hook_resid_pre"].double()
    normed = (x - x.mean(-1, keepdim=True)) / torch.sqrt(
        x.var(-1, unbiased=False, keepdim=True) + 1e-5
    )
    block = model.blocks[1]
    beta_term = (
        block.ln_1.bias.double() @ block.attn.c_attn.weight.double().T
        + block.attn.c_attn.bias.double()
    )
    w = circuits.head_weights(model, 1, 2)
    q = normed @ w["W_Q"] + beta_term[16:24]
    assert torch.allclose(q[0], cache["blocks.1.attn.hook_q"][0, 2].double(), atol=1e-5)
    v = normed @ w["W_V"] + beta_term[64 + 16 : 64 + 24]
    assert torch.allclose(v[0], cache["blocks.1.attn.hook_v"][0, 2].double(), atol=1e-5)
    # W_O: the head's write equals c_proj applied to its slot alone, minus the bias
    z = torch.randn(8, dtype=torch.float64)
    slot = torch.zeros(32, dtype=torch.float64)
    slot[16:24] = z
    assert torch.allclose(z @ w["W_O"], slot @ block.attn.c_proj.weight.double().T, atol=1e-10)


def test_token_circuits_rows_and_composition_score_by_hand():
    model = char_model()
    ov = circuits.ov_token_circuit(model, 1, 0)
    w = circuits.head_weights(model, 1, 0)
    dense = circuits.embedding(model) @ w["W_V"] @ w["W_O"] @ circuits.unembedding(model)
    assert torch.allclose(ov.rows([3, 5]), dense[[3, 5]], atol=1e-9)
    top = circuits.top_tokens(model, 1, 0, "ov", [3], 2)
    assert top.top_ids[0] == dense[3].topk(2).indices.tolist()
    scores = circuits.composition_scores(model)
    w0 = circuits.head_weights(model, 0, 3)
    left = w0["W_V"] @ w0["W_O"]
    right = w["W_Q"] @ w["W_K"].T
    expected = torch.linalg.norm(left @ right.T) / (
        torch.linalg.norm(left) * torch.linalg.norm(right)
    )
    assert float(scores["K"][0, 3, 1, 0]) == pytest.approx(float(expected), rel=1e-5)
    assert torch.isnan(scores["Q"][1, 0, 0, 0]) and torch.isnan(scores["V"][1, 1, 1, 2])


def test_circuits_refuse_rotary_models():
    with pytest.raises(GptlabError, match="rotary"):
        circuits.ov_circuit(random_model(pos="rope"), 0, 0)
