"""mapper.fields.truth: the world's fields on a block grid — cropland only, one key per instance, boundaries that
keep fields apart, seamless across the block border, deterministic."""

import numpy as np
import pytest

from mapper.fields.regions import outline
from mapper.fields.truth import BACKGROUND, BOUNDARY, INTERIOR, NO_FIELD, field_keys, field_truth
from mapper.grid.blocks import Block
from mapper.grid.tilegrid import PixelWindow
from mapper.world.landscape import CROPLAND
from mapper.world.truth import block_cover
from mapper.world.world import get_world

BLOCK = Block.parse("5886_2256")  # the world_run block: about a quarter cropland, small southern fields


@pytest.fixture(scope="module")
def world():
    return get_world(0)


@pytest.fixture(scope="module")
def truth(world):
    return field_truth(world, BLOCK)


def test_fields_are_the_worlds_cropland(world, truth):
    assert truth.labels.shape == BLOCK.window().shape
    assert (truth.cropland == CROPLAND[block_cover(world, BLOCK)]).all()
    assert ((truth.classes != BACKGROUND) == truth.cropland).all()
    assert set(np.unique(truth.classes)) == {BACKGROUND, INTERIOR, BOUNDARY}
    assert truth.n > 1000 and truth.labels.max() == truth.n


def test_each_instance_is_one_field_of_the_world(world, truth):
    keys, _ = field_keys(world, truth.window)
    on = truth.labels > 0
    assert (truth.keys[truth.labels[on]] == keys[on]).all()
    assert truth.keys[0] == NO_FIELD and (truth.keys[1:] != NO_FIELD).all()


def test_interiors_of_different_fields_never_touch(truth):
    lab, interior = truth.labels, truth.classes == INTERIOR
    for a, b in (((slice(None), slice(1, None)), (slice(None), slice(None, -1))),
                 ((slice(1, None), slice(None)), (slice(None, -1), slice(None)))):  # fmt: skip
        touching = interior[a] & interior[b]
        assert (lab[a][touching] == lab[b][touching]).all()
    # every outline pixel of the block's instances is boundary (inside the block; the border sees across)
    assert (truth.classes[1:-1, 1:-1][outline(truth.labels)[1:-1, 1:-1]] == BOUNDARY).all()


def test_the_worlds_field_edges_are_boundary(world, truth):
    _, edge = field_keys(world, truth.window)
    assert edge.any() and (truth.classes[edge] == BOUNDARY).all()


def test_classes_seamless_across_the_block_border(world, truth):
    east = field_truth(world, Block(BLOCK.ix + 1, BLOCK.iy))
    w = truth.window
    joint = PixelWindow(16, w.col1 - 4, w.row0, w.col1 + 4, w.row1)  # 4 columns each side of the border
    keys, edge = field_keys(world, joint, pad=1)
    crop = keys != NO_FIELD
    classes = np.where(crop, np.where(outline(keys, crop) | edge, BOUNDARY, INTERIOR), BACKGROUND)[1:-1, 1:-1]
    assert (classes[:, :4] == truth.classes[:, -4:]).all()
    assert (classes[:, 4:] == east.classes[:, :4]).all()


def test_deterministic(world, truth):
    again = field_truth(world, BLOCK)
    assert (again.labels == truth.labels).all() and (again.classes == truth.classes).all()
    assert (again.keys == truth.keys).all()
