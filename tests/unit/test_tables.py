"""ftcourse.tables: the one table type, as text and as HTML."""
from ftcourse import Table, course_backbone, trainable_summary
from ftcourse.tables import format_cell


def test_text_table_aligns_text_left_numbers_right_and_lists_warnings():
    t = Table([{"name": "a", "n": 1234, "x": 0.123456}, {"name": "bbb", "n": 5, "x": None}],
              warnings=["careful"], title="T", formats={"x": "{:.2f}"}, notes=["a note"])
    lines = str(t).splitlines()
    assert lines[0] == "T"
    assert lines[1].split() == ["name", "n", "x"]
    assert lines[3] == "a     1,234  0.12" and lines[4] == "bbb       5     -"
    assert lines[-2:] == ["WARNING: careful", "a note"]


def test_html_table_escapes_and_shows_title_and_warnings():
    html = Table([{"a<b": "<x>"}], warnings=["w&"], title="t")._repr_html_()
    assert "<caption>t</caption>" in html and "a&lt;b" in html and "&lt;x&gt;" in html and "w&amp;" in html


def test_format_cell():
    assert [format_cell(v) for v in (None, True, 12345, 0.000123456, "s")] == ["-", "True", "12,345", "0.000123", "s"]
    assert format_cell(0.5, "{:.0%}") == "50%"


def test_reports_print_through_the_table_type():
    assert isinstance(trainable_summary(course_backbone()), Table)
