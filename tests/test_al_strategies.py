"""The registry of selection strategies (mapper.al.strategies): what the CLI and the config read, and that a new
strategy is one module registered by name."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from mapper.al.picker import Pick
from mapper.al.pool import SelectionError
from mapper.al.select import select_blocks
from mapper.al.strategies import Context, Strategy, base, get_strategy, register, strategy_names
from mapper.config.models import AlConfig, SelectionSettings
from tests.test_al_select import pool_table


def test_every_strategy_module_registers_itself():
    assert strategy_names() == ("combined", "disagreement", "error", "random", "uncertainty")
    assert get_strategy("error").needs(SelectionSettings()) == ("error",)
    assert get_strategy("random").needs(SelectionSettings()) == ()
    weights = {"error": 1, "uncertainty": 0, "disagreement": 2}
    assert get_strategy("combined").needs(SelectionSettings(weights=weights)) == ("error", "disagreement")
    # a one-source pool: the combined score keeps the components one source gives
    assert get_strategy("combined").needs(SelectionSettings(), ("a",)) == ("uncertainty",)
    with pytest.raises(SelectionError, match=r"components \(error, disagreement\) need two sources"):
        get_strategy("combined").needs(SelectionSettings(weights=weights), ("a",))


def test_the_config_and_the_cli_read_the_registry():
    with pytest.raises(ValidationError, match="unknown selection strategy 'combind'; known: combined, disagreement"):
        AlConfig(strategy="combind")
    from mapper.cli import cli

    result = CliRunner().invoke(cli, ["al", "init", "--help"])
    assert "[combined|disagreement|error|random|uncertainty]" in result.output


def test_selection_settings_are_checked_when_the_config_loads():
    with pytest.raises(ValidationError, match="random_shares"):
        AlConfig.model_validate({"selection": {"random_shares": 0.1}})
    al = AlConfig.model_validate({"selection": {"random_share": 0.1, "weights": {"error": 2}}})
    assert al.selection.random_share == 0.1 and al.selection.weights.uncertainty == 1.0
    # a saved config says what its user chose, as the plain dict the settings once were did
    assert al.model_dump(mode="json")["selection"] == {"random_share": 0.1, "weights": {"error": 2.0}}
    assert AlConfig().model_dump(mode="json")["selection"] == {}


@pytest.fixture
def farthest_east():
    """A strategy added the way a new module would add it (removed again after the test)."""

    @register
    class FarthestEast(Strategy):
        name = "east"

        def pick(self, ctx: Context, n: int) -> None:
            east = ctx.table["ix"].to_numpy(dtype=float)
            ctx.picker.top_score(east, n, self.name)

        def reason(self, ctx: Context, pick: Pick) -> str:
            return f"column {ctx.table['ix'].iat[pick.row]}"

    yield FarthestEast
    del base._REGISTRY["east"]


def test_a_new_strategy_is_one_registered_class(farthest_east):
    assert "east" in strategy_names() and AlConfig(strategy="east").strategy == "east"
    pool = pool_table(600)
    chosen = select_blocks(pool, 5, "east", settings=SelectionSettings(min_distance_km=0))
    assert len(chosen) == 5 and (chosen["ix"] == pool["ix"].max()).sum() >= 1
    assert set(chosen["strategy"]) == {"east"} and chosen["reason"].str.startswith("column ").all()
    with pytest.raises(ValueError, match="two selection strategies are named 'east'"):

        @register
        class Other(farthest_east):
            pass
