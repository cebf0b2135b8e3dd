"""The crop taxonomy table: the packaged one, and broken tables refused with the row named."""

import numpy as np
import pytest

from mapper.croptype.taxonomy import TaxonomyError, from_description, packaged_taxonomy, read_taxonomy

HEADER = "code,level1,level2,level3,level4,perennial,specific,cropped\n"


def test_packaged_taxonomy_has_four_levels_and_flags():
    tax = packaged_taxonomy()
    assert tax.sizes == (5, 11, 17, 25)
    assert tax.paths.shape == (25, 4)
    # Every class below level 1 has exactly one parent, and the paths are the table's.
    for level in range(1, 4):
        parent = tax.parent(level)
        assert (parent >= 0).all()
        assert np.array_equal(parent[tax.paths[:, level]], tax.paths[:, level - 1])
    names = tax.leaf_names()
    assert tax.perennial[names.index("sugarcane")] and not tax.perennial[names.index("grain maize")]
    assert not tax.specific[names.index("other pulses")] and tax.specific[names.index("soybean")]
    assert not tax.cropped[names.index("fallow")]
    again = from_description(tax.describe())
    assert again.sha256 == tax.sha256 and np.array_equal(again.paths, tax.paths)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            "1,cereals,rice,rice,single rice,false,true,true\n2,oilseeds,rice,rice,double rice,false,true,true\n",
            "line 3: level-2 class 'rice' is under 'oilseeds' here but under 'cereals'",
        ),
        (
            "1,cereals,rice,rice,single rice,false,true,true\n1,cereals,rice,rice,double rice,false,true,true\n",
            "line 3: code 1 is used twice",
        ),
        ("1,cereals,rice,,single rice,false,true,true\n", "line 2: an empty class name"),
        ("1,cereals,rice,rice,single rice,maybe,true,true\n", "line 2: perennial is 'maybe'"),
        ("0,cereals,rice,rice,single rice,false,true,true\n", "code 0 must be 1..255"),
        (
            "1,cereals,rice,rice,rice,false,true,true\n2,cereals,wheat,wheat,rice,false,true,true\n",
            "leaf 'rice' appears twice",
        ),
    ],
)
def test_broken_tables_are_refused_naming_the_row(tmp_path, rows, message):
    path = tmp_path / "taxonomy.csv"
    path.write_text(HEADER + rows)
    with pytest.raises(TaxonomyError, match=message.replace("(", r"\(")):
        read_taxonomy(path)


def test_missing_columns_and_file(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("code,level1\n1,cereals\n")
    with pytest.raises(TaxonomyError, match="lacks column"):
        read_taxonomy(path)
    with pytest.raises(TaxonomyError, match="not found"):
        read_taxonomy(tmp_path / "none.csv")
