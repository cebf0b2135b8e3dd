"""The one reader of mapper's JSON files with a "format" tag: the file, what it should be and the fix."""

import pytest

from mapper.store.json_file import read_json


class FileError(ValueError):
    pass


def test_reads_a_file_of_its_format(tmp_path):
    p = tmp_path / "thing.json"
    p.write_text('{"format": "mapper-thing/1", "blocks": [1, 2]}')
    assert read_json(p, "mapper-thing/1", "a thing", "make it again", required=("blocks",)) == {
        "format": "mapper-thing/1",
        "blocks": [1, 2],
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", r"thing.json is not valid JSON \(.*\); make it again$"),
        ('{"format": "mapper-thing/0"}', r"thing.json is not a thing: its format is 'mapper-thing/0', not "
         r"'mapper-thing/1'; make it again$"),
        ("[1, 2]", r"is not a thing: its format is 'list', not 'mapper-thing/1'"),
        ('{"blocks": []}', r"is not a thing: its format is None"),
        ('{"format": "mapper-thing/1"}', r"thing.json lacks blocks; make it again$"),
        (b"\xff\xfe".decode("latin-1"), r"not valid JSON"),
    ],
)  # fmt: skip
def test_failures_name_the_file_and_the_fix_in_the_callers_error(tmp_path, text, message):
    p = tmp_path / "thing.json"
    p.write_text(text, encoding="latin-1")
    with pytest.raises(FileError, match=message):
        read_json(p, "mapper-thing/1", "a thing", "make it again", FileError, required=("blocks",))


def test_a_missing_file_is_left_to_the_caller(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_json(tmp_path / "none.json", "mapper-thing/1", "a thing", "make it again")
