import pytest

from components.celeba import layout as fmt

NAMES = ["Bald", "Male", "Young"]


def test_parses_rows_with_runs_of_spaces():
    assert fmt.parse_attribute_row("000001.jpg -1  1  1", NAMES) == ("000001.jpg", {"Bald": -1, "Male": 1, "Young": 1})
    assert fmt.parse_identity_row("000001.jpg 2880") == ("000001.jpg", 2880)
    assert fmt.parse_partition_row("000003.jpg 2") == ("000003.jpg", 2)
    assert fmt.parse_landmark_row("000001.jpg    69  109  106  113   77  142   73  152  108  154") == (
        "000001.jpg", (69, 109, 106, 113, 77, 142, 73, 152, 108, 154))


@pytest.mark.parametrize("parse,line,message", [
    (lambda line: fmt.parse_attribute_row(line, NAMES), "000001.jpg -1  1", "3 values"),
    (lambda line: fmt.parse_attribute_row(line, NAMES), "000001.jpg -1  0  1", "-1 or 1"),
    (lambda line: fmt.parse_attribute_row(line, NAMES), "000001.jpg -1  x  1", "non-integer"),
    (fmt.parse_identity_row, "000001.jpg", "1 values"),
    (fmt.parse_partition_row, "000001.jpg 3", "0, 1 or 2"),
    (fmt.parse_landmark_row, "000001.jpg 1 2 3", "10 values"),
])
def test_bad_rows_raise_with_reason(parse, line, message):
    with pytest.raises(fmt.LabelRowError, match=message):
        parse(line)


def test_missing_layout_names_every_missing_file(tmp_path):
    (tmp_path / fmt.ATTRIBUTES_FILE).write_text("0\nMale\n")
    with pytest.raises(fmt.CelebALayoutError) as error:
        fmt.check_layout(str(tmp_path))
    assert ("missing identity_CelebA.txt, list_eval_partition.txt, list_landmarks_align_celeba.txt, "
            "img_align_celeba/. Point --data at") in str(error.value)
