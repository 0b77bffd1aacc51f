"""``radcommons harmonize map`` and ``check`` given the files curators really make, as a real subprocess.

Each case was a wrong answer or an unhelpful message: a CSV saved as .tsv was "missing
columns" with no word of the separator, a row cut short was answered as a blank description
(at confidence 1.0), an output path under a file was "cannot write (File exists)", and a
table naming a code otherwise than the code attributes, or a code nobody names, passed the
check while the output silently carried the attributes' name, or no name at all.
"""

from __future__ import annotations

from pathlib import Path

from test_harmonize_cli import HEADER, read_tsv, run


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_a_csv_named_tsv_is_told_to_use_tabs(tmp_path: Path) -> None:
    pairs = write(tmp_path / "pairs.tsv", "Modality,StudyDescription\nDX,XR CHEST 1 VIEW AP\n")
    result = run("map", "--input", str(pairs), "--output", str(tmp_path / "out.tsv"), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "pairs.tsv: missing column(s) Modality, StudyDescription" in result.stderr
    assert "separated by commas (,)" in result.stderr and "save the file as .csv" in result.stderr
    assert not (tmp_path / "out.tsv").exists()


def test_a_row_cut_short_is_refused_naming_it(tmp_path: Path) -> None:
    """It was answered as a blank description: 43468-8 'XR Unspecified body region Views', confidence 1.000."""
    pairs = write(tmp_path / "pairs.tsv", "Modality\tStudyDescription\tsite\nDX\tXR CHEST 1 VIEW AP\tA\nDX\n")
    result = run("map", "--input", str(pairs), "--output", str(tmp_path / "out.tsv"), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "pairs.tsv: row 3: no cell for column(s) StudyDescription (1 cell(s) where the header names 3)" \
        in result.stderr
    assert "end the row with a tab" in result.stderr
    assert not (tmp_path / "out.tsv").exists()
    # A blank description given as an empty cell is a pair like any other.
    write(pairs, "Modality\tStudyDescription\tsite\nDX\tXR CHEST 1 VIEW AP\tA\nDX\t\t\n")
    result = run("map", "--input", str(pairs), "--output", str(tmp_path / "out.tsv"), cwd=tmp_path)
    assert result.returncode == 0 and len(read_tsv(tmp_path / "out.tsv")) == 2, result.stderr
    # The same for a mapping table: a row without its description cell is refused, not a blank pair.
    table = write(tmp_path / "table.tsv", HEADER + "DX\tXR FOO\t36643-5\tXR Chest 2 Views\nDX\n")
    result = run("check", str(table), cwd=tmp_path)
    assert result.returncode == 2 and "table.tsv: row 3: no cell for column(s) StudyDescription" in result.stderr


def test_an_output_path_that_cannot_be_a_file(tmp_path: Path) -> None:
    pairs = write(tmp_path / "pairs.tsv", "Modality\tStudyDescription\nDX\tXR CHEST 1 VIEW AP\n")
    result = run("map", "--input", str(pairs), "--output", str(pairs / "out.tsv"), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert f"--output {pairs / 'out.tsv'}: {pairs} is a file, not a folder" in result.stderr  # was 'File exists'
    (tmp_path / "folder").mkdir()
    result = run("map", "--input", str(pairs), "--output", str(tmp_path / "folder"), cwd=tmp_path)
    assert result.returncode == 2 and f"--output {tmp_path / 'folder'}: a folder, not a file" in result.stderr
    assert f"e.g. {tmp_path / 'folder' / 'mapped.tsv'}" in result.stderr
    assert list((tmp_path / "folder").iterdir()) == []  # no temporary file left behind


def test_check_compares_names_with_the_code_attributes(tmp_path: Path) -> None:
    """36572-6 is 'XR Chest AP' in MIDRC's attributes: a table calling it 'XR Chest PA' was 'ok', and
    map answered 'XR Chest AP' for it; a code neither in the attributes nor named was answered nameless."""
    table = write(tmp_path / "table.tsv", HEADER
                  + "DX\tXR FOO\t36572-6\tXR Chest PA\n"
                  + "DX\tXR BAR\t99999-9\t\n"
                  + "DX\tXR BAZ\t12345-6\tXR Made up but named\n"
                  + "DX\tXR QUX\t36643-5\txr chest  2 views\n")
    result = run("check", str(table), cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stdout + result.stderr
    assert "2 conflict(s)" in result.stdout
    assert "36572-6: code has names XR Chest AP (code attributes) | XR Chest PA (rows 2)" in result.stdout
    assert "99999-9: code has no name in column L-Long Common Name and is not in the code attributes (rows 3): " \
        "give its LOINC long common name" in result.stdout
    assert "12345-6" not in result.stdout and "36643-5" not in result.stdout  # named, or the same name
    pairs = write(tmp_path / "pairs.tsv", "Modality\tStudyDescription\nDX\tXR FOO\n")
    result = run("map", "--mapping-table", str(table), "--input", str(pairs), "--output", str(tmp_path / "o.tsv"),
                 cwd=tmp_path)
    assert result.returncode == 0 and "has 2 conflict(s)" in " ".join(result.stderr.split()), result.stderr


def test_excel_unicode_text_is_read_and_a_semicolon_csv_is_told_its_separator(tmp_path: Path) -> None:
    """Excel's 'Unicode Text' (UTF-16 with a byte order mark) was 'not UTF-8 ... iconv -f latin1'; a
    ';'-separated .csv (Excel in many locales) was told that a .tsv file is read with tabs."""
    pairs = tmp_path / "pairs.txt"
    pairs.write_bytes("Modality\tStudyDescription\r\nDX\tXR CHEST 1 VIEW AP\r\n".encode("utf-16"))
    result = run("map", "--input", str(pairs), "--output", str(tmp_path / "out.tsv"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [(r["StudyDescription"], r["loinc_code"]) for r in read_tsv(tmp_path / "out.tsv")] == \
        [("XR CHEST 1 VIEW AP", "36572-6")]
    semicolons = write(tmp_path / "pairs.csv", "Modality;StudyDescription\nDX;XR CHEST 1 VIEW AP\n")
    result = run("map", "--input", str(semicolons), "--output", str(tmp_path / "out.tsv"), cwd=tmp_path)
    assert result.returncode == 2 and "separated by semicolons (;)" in result.stderr, result.stderr
    assert "read as comma-separated" in result.stderr and ".tsv" not in result.stderr.replace("out.tsv", "")


def test_a_report_saved_as_a_web_page_is_refused_for_what_it_is(tmp_path: Path) -> None:
    """An HTML "Excel" export was read as a table of one column named '<html>...': 'missing column(s)'."""
    pairs = write(tmp_path / "pairs.tsv", "<html><body><table><tr><td>Modality</td><td>StudyDescription</td></tr>"
                                          "</table></body></html>\n")
    result = run("map", "--input", str(pairs), "--output", str(tmp_path / "out.tsv"), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "an HTML page" in result.stderr and "missing column" not in result.stderr
    assert not (tmp_path / "out.tsv").exists()
