"""mmpiqa.workbook.towers: token layout, parameter counts per depth, cost per depth, attention paid to prompt tokens."""

import matplotlib
import pytest
import torch

from mmpiqa.config import ConfigError, ModelConfig
from mmpiqa.model.prompted_clip import build_model
from mmpiqa.workbook import towers

matplotlib.use("Agg")

MICRO = ModelConfig(backbone="micro")  # image 32 px, patch 8 (16 patches), width 64, 3 blocks, 2 heads


def test_layout_of_a_deep_model():
    model = build_model(MICRO.replace(visual_depth=2, n_vis=3))
    layout = towers.prompt_layout(model)
    assert (layout.n_patches, layout.n_prompts, layout.n_blocks, layout.depth) == (16, 3, 3, 2)
    assert layout.length == 1 + 16 + 3 and layout.prompt_slots == slice(17, 20)
    assert [layout.source(b) for b in range(3)] == ["appended", "replaced", "carried"]
    table = layout.table()
    assert list(table["prompt source"]) == ["appended", "replaced", "carried"]
    assert list(table["learned tensor"]) == ["prompts[0]", "prompts[1]", "-"]
    with pytest.raises(IndexError):
        layout.source(3)


def test_layout_without_prompts_and_with_all_blocks():
    none = towers.prompt_layout(build_model(MICRO.replace(visual_depth=0)))
    assert none.n_prompts == 0 and none.length == 17
    assert {none.source(b) for b in range(3)} == {"none"}
    every = towers.prompt_layout(build_model(MICRO.replace(visual_depth=-1)))
    assert every.depth == 3 and [every.source(b) for b in range(3)] == ["appended", "replaced", "replaced"]


def test_the_layout_matches_the_sequence_the_blocks_see(micro_images):
    model = build_model(MICRO.replace(visual_depth=2, n_vis=3))
    layout = towers.prompt_layout(model)
    seen = []
    hooks = [
        b.register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape[1]))
        for b in model.clip.visual.transformer.resblocks
    ]
    with torch.no_grad():
        model.image_features(micro_images)
    for h in hooks:
        h.remove()
    assert seen == [layout.length] * layout.n_blocks


def test_draw_layout_draws_one_row_per_block():
    ax = towers.draw_layout(
        towers.TokenLayout(n_patches=16, n_prompts=2, n_blocks=3, depth=2), show_patches=3
    )
    # CLS + 3 patches + ellipsis + 2 prompts, for each of 3 blocks
    assert len(ax.patches) == 3 * (1 + 3 + 1 + 2)
    assert len(ax.get_yticklabels()) == 3


def test_depth_table_follows_the_parameter_formula():
    table = towers.depth_table(MICRO.replace(n_vis=2), [0, 1, -1])
    width = 64
    assert list(table.index) == [0, 1, 3]
    assert list(table["visual"]) == [0, 2 * width * 1, 2 * width * 3]
    assert table.loc[3, "visual tensor"] == "(3, 2, 64)" and table.loc[0, "visual tensor"] == "-"
    assert (table["learned"] == table["text"] + table["visual"] + table["head"]).all()
    coupled = towers.depth_table(MICRO.replace(coupled=True, n_vis=3, text_depth=3), [2])
    assert (
        coupled.loc[2, "visual"] == 2 * (48 * 64 + 64) and coupled.loc[2, "visual tensor"] == "coupled maps"
    )


def test_cost_per_depth_reports_positive_times():
    threads = torch.get_num_threads()
    cost = towers.cost_per_depth(MICRO, [0, 1], batch=4, steps=2, warmup=1)
    assert torch.get_num_threads() == threads  # the one-thread CPU clock restores the setting
    assert list(cost.index) == [0, 1] and set(cost["clock"]) == {"cpu"}
    assert (cost[["forward_s", "backward_s"]] >= 0).all().all() and (cost["step_s"] > 0).all()
    assert cost["step_s"].equals(cost["forward_s"] + cost["backward_s"])
    assert cost.loc[1, "learned"] > cost.loc[0, "learned"]
    wall = towers.cost_per_depth(MICRO, [1], batch=4, steps=1, warmup=0, clock="wall")
    assert wall.loc[1, "clock"] == "wall" and wall.loc[1, "step_s"] > 0
    with pytest.raises(ValueError, match="clock"):
        towers.cost_per_depth(MICRO, [1], clock="gpu")


def test_cost_per_depth_refuses_empty_batches_and_no_timed_steps():
    for changes, message in [
        ({"batch": 0}, "batch=0: images per timed training step, a whole number >= 1"),
        ({"steps": 0}, r"steps=0: timed training steps per depth \(the fastest counts\), a whole"),
        ({"warmup": -1}, "warmup=-1: untimed rounds before the timed steps, a whole number >= 0"),
    ]:
        with pytest.raises(ConfigError, match=message):
            towers.cost_per_depth(MICRO, [1], **changes)


def test_attention_maps_are_the_blocks_own_attention(micro_images):
    """Rows sum to 1, and the recomputed attention rebuilds each block's output from its input."""
    model = build_model(MICRO.replace(visual_depth=1, n_vis=2))
    maps = towers.attention_maps(model, micro_images)
    layout = towers.prompt_layout(model)
    assert len(maps) == 3
    for weights in maps:
        assert weights.shape == (3, 2, layout.length, layout.length)  # (B, heads, L, L)
        torch.testing.assert_close(weights.sum(-1), torch.ones(3, 2, layout.length))
    inputs = []
    blocks = model.clip.visual.transformer.resblocks
    hooks = [b.register_forward_pre_hook(lambda _m, args: inputs.append(args[0])) for b in blocks]
    with torch.no_grad():
        model.image_features(micro_images)
    for h in hooks:
        h.remove()
    block, x, nxt = blocks[0], inputs[0], inputs[1]  # depth 1: block 1 gets block 0's output unchanged
    with torch.no_grad():
        y = block.ln_1(x)
        heads, dim = block.attn.num_heads, x.shape[-1]
        v = torch.nn.functional.linear(y, block.attn.in_proj_weight, block.attn.in_proj_bias)[..., 2 * dim :]
        v = v.view(3, -1, heads, dim // heads).transpose(1, 2)  # (B, heads, L, d)
        attended = (maps[0] @ v).transpose(1, 2).reshape(3, -1, dim)
        out = x + block.ls_1(block.attn.out_proj(attended))
        out = out + block.ls_2(block.mlp(block.ln_2(out)))
    torch.testing.assert_close(out, nxt, rtol=1e-4, atol=1e-5)


def test_prompt_attention_shares(micro_images):
    model = build_model(MICRO.replace(visual_depth=2, n_vis=2))
    shares = towers.prompt_attention(model, micro_images)
    assert list(shares.index) == [0, 1, 2]
    total = shares["cls"] + shares["patches"] + shares["prompts"]
    torch.testing.assert_close(torch.tensor(total.to_numpy()), torch.ones(3, dtype=torch.float64))
    assert (shares["prompts"] > 0).all()
    assert (shares["uniform"] == 2 / 19).all()
    assert list(shares["source"]) == ["appended", "replaced", "carried"]


def test_depth_zero_pays_no_attention_to_prompts(micro_images):
    table = towers.attention_by_depth(MICRO, [0, 1, -1], micro_images)
    assert list(table.index) == [0, 1, 3] and list(table.columns) == [0, 1, 2]
    assert (table.loc[0] == 0).all()
    assert (table.loc[[1, 3]] > 0).all().all()


def test_attention_refuses_blocks_it_cannot_read(micro_images):
    model = build_model(MICRO.replace(visual_depth=1))
    model.clip.visual.transformer.resblocks[0].attn = torch.nn.Identity()
    with pytest.raises(TypeError, match="MultiheadAttention"):
        towers.attention_maps(model, micro_images)


def test_models_per_depth_share_one_backbone_and_match_build_model():
    models = towers.models_per_depth(MICRO, [0, 2, -1])
    assert list(models) == [0, 2, 3]
    assert models[2].clip is models[3].clip is models[0].clip
    alone = build_model(MICRO.replace(visual_depth=2))
    for name, tensor in alone.learned_state_dict().items():
        torch.testing.assert_close(models[2].learned_state_dict()[name], tensor, rtol=0, atol=0)
    assert models[2].identity == alone.identity
