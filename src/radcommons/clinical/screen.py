"""Identifiers in the free text a site sends as typed: condition and medication names, codes, country.

A converted record carries these fields as the site wrote them, so an MRN, a name, a phone
number or a date typed into a note would leave the site. Each text cell is screened for:

* the identifier patterns of the de-identifier (:data:`radcommons.deid.patterns.NAMED_PATTERNS`:
  dates in many shapes, phones, e-mail addresses, SSNs, UIDs, names after titles, ages over
  89, runs of five or more digits), one set for DICOM text and clinical text; a LOINC code in a
  test name (``94500-6``, its check digit right) is no run of digits;
* the site's own identifiers (:class:`KnownIdentifiers`): its MRNs, and the names and
  addresses of the columns the conversion drops (whole words, ignoring case);
* spreadsheet formulas (``=HYPERLINK(``, ``+cmd|``, ``@SUM(``), which run when a
  researcher opens the file in a spreadsheet program;
* the shape of codes (ICD-10-CM ``U07.1``, ICD-9-CM, SNOMED CT / RxNorm digits, ATC, NDC)
  and of the country (a name or an ISO 3166-1 code holds no digits).

Problems name the kind of identifier, never its value.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable

from radcommons.clinical.values import CellProblem
from radcommons.deid.patterns import NAMED_PATTERNS
from radcommons.dictionary import NOT_REPORTED

#: What each pattern of the de-identifier is, in words (patterns left out are not used here:
#: "ssn-spaced" and "phone-local" match doses and counts).
_KINDS = {
    "email": "an e-mail address",
    "uid": "a UID",
    "titled-name": "a name after a title (Dr., Mr., Mrs. ...)",
    "ssn": "a social security number",
    "phone": "a phone number",
    "date": "a calendar date",
    "date-more": "a calendar date",
    "date-words": "a calendar date",
    "age-over-89": "an age over 89",
    "digits": "a run of five or more digits (an MRN, an accession number or a date?)",
}
#: Codes are digits: runs of digits are their shape, not an identifier.
_CODE_KINDS = {k: v for k, v in _KINDS.items() if k != "digits"}
_PATTERNS = tuple((name, pattern) for name, _, _, pattern in NAMED_PATTERNS if name in _KINDS)

#: The shapes of ICD-10-CM (U07.1, J12.82, Z99.11) and ICD-9-CM (486, V58.61, E849.7) codes.
_ICD10CM = r"[A-Z]\d[0-9A-Z](?:\.?[0-9A-Z]{1,4})?"
_ICD9CM = r"(?:\d{3}|V\d{2}|E\d{3})(?:\.\d{1,2})?"
#: A plausible code: ICD-10-CM, ICD-9-CM, SNOMED CT / RxNorm concept ids (digits), ATC (J05AB16)
#: and NDC (0002-7597-01).
_CODE_SHAPES = {
    "condition_code": re.compile(
        rf"{_ICD10CM}|{_ICD9CM}"
        r"|\d{6,18}",  # SNOMED CT
        re.IGNORECASE,
    ),
    "medication_code": re.compile(
        r"\d{1,18}"  # RxNorm, SNOMED CT
        r"|[A-Z](?:\d{2}(?:[A-Z](?:[A-Z](?:\d{2})?)?)?)?"  # ATC
        r"|\d{4,5}-\d{3,4}-\d{1,2}",  # NDC
        re.IGNORECASE,
    ),
}
_CODE_EXAMPLES = {
    "condition_code": "an ICD-10-CM code such as U07.1, an ICD-9-CM or a SNOMED CT code",
    "medication_code": "an RxNorm or SNOMED CT number, an ATC code such as J05AB16, or an NDC",
}
#: A country: a name ("United States", "Korea, Republic of", "Côte d'Ivoire") or an ISO
#: 3166-1 code (US, USA): letters, spaces and a little punctuation, never digits.
_COUNTRY = re.compile(r"[^\W\d_]+(?:[ ,.'()-]+[^\W\d_]+)*\.?\)?")
#: A spreadsheet formula: "=..." always; "+", "-", "@" before a function call or a DDE link.
_FORMULA = re.compile(r"=|[+\-@].*(?:[A-Za-z_.]\s*\(|\|)", re.DOTALL)
FIX = "remove the identifier from the text in the source file and export it again"
#: A LOINC code (LOINC Users' Guide, 2.2: up to seven digits, a hyphen and a check digit), standing alone:
#: between spaces, brackets or list punctuation, so that no part of a date ("7/4/1961-2") or another number is one.
_LOINC = re.compile(r"(?<![^\s(\[,;:])(\d{1,7})-(\d)(?=$|[\s)\],;])")


def is_formula(text: str) -> bool:
    """Whether a spreadsheet program would run ``text`` as a formula (CSV injection)."""
    return bool(_FORMULA.match(text.lstrip()))


def screen_text(field: str, text: str) -> CellProblem | None:
    """What is wrong with the free-text ``field`` holding ``text``, if anything (see the module)."""
    if is_formula(text):
        return CellProblem("spreadsheet_formula", f"a spreadsheet formula: the text starts with {text.lstrip()[0]!r} "
                           "and would run when the file is opened in a spreadsheet program",
                           "write the value itself, without the leading character or the formula")
    kinds = _CODE_KINDS if field in _CODE_SHAPES else _KINDS
    # A test name may carry its LOINC code ("SARS-CoV-2 RNA 94500-6"): five digits that are no MRN
    found = _found(_without_loinc(text) if field == "test_name" else text, kinds)
    if found:
        return CellProblem("identifier_in_text", f"the text holds {' and '.join(found)}", FIX)
    shape = _CODE_SHAPES.get(field)
    if shape is not None and not shape.fullmatch(text):
        return CellProblem("bad_code", f"the text is not a code: expected {_CODE_EXAMPLES[field]}",
                           "write the code alone; remove the identifier or the words from the text")
    if field == "country" and not _COUNTRY.fullmatch(text):
        return CellProblem("bad_country", "the text is not a country (a name or an ISO 3166-1 code holds no digits)",
                           "write the country's ISO 3166-1 code (e.g. US); " + FIX)
    return None


def code_system(code: str) -> str:
    """The condition_code_system of a condition ``code``: ICD-10-CM when only an ICD-10-CM code has its
    shape, else Not Reported. The site's column says no system ("code", "dx_code"), and one that accepts
    ICD-9-CM and SNOMED CT codes too (486, 840539006) must not have them sent as ICD-10-CM; a code of
    either shape (V58.61, E119) is not told apart."""
    text = code.strip()
    if re.fullmatch(_ICD10CM, text, re.IGNORECASE) and not re.fullmatch(_ICD9CM, text, re.IGNORECASE):
        return "ICD-10-CM"
    return NOT_REPORTED


def loinc_check_digit(digits: str) -> str:
    """The check digit of a LOINC code's number (``94500`` -> ``6``): the Mod 10 algorithm of the LOINC Users'
    Guide (Appendix: Calculating Mod 10 check digits), Luhn's: every other digit from the right doubled, the
    digits of all summed, and the check digit what takes the sum to a multiple of ten."""
    total = 0
    for position, digit in enumerate(reversed(digits)):
        value = int(digit) * (2 if position % 2 == 0 else 1)
        total += value // 10 + value % 10
    return str(-total % 10)


def _without_loinc(text: str) -> str:
    """``text`` with its LOINC codes taken out: the LOINC shape whose check digit is right, so that a number written
    so by chance (one in ten) is looked at as any other; the site's own MRNs are looked for apart
    (:class:`KnownIdentifiers`), in the whole text."""
    return _LOINC.sub(lambda m: " " if loinc_check_digit(m.group(1)) == m.group(2) else m.group(0), text)


def _found(text: str, kinds: dict[str, str]) -> list[str]:
    found: list[str] = []
    for name, pattern in _PATTERNS:
        if name in kinds and kinds[name] not in found and pattern.search(text):
            found.append(kinds[name])
    return found


_WORD = re.compile(r"[^\W_]+")
_TOKEN = re.compile(r"[\w.-]*\w")


def _words(text: str) -> list[str]:
    return [w.casefold() for w in _WORD.findall(text)]


class KnownIdentifiers:
    """The site's own identifiers, looked for as whole words in a patient's text (ignoring case).

    ``mrns``: every MRN of the site (clinical rows and images) of four characters or more. ``names``: per MRN, the
    values of the columns the conversion drops (names, addresses, phones): any of their
    words in that patient's text is a hit, and any two words of one row in order (a full
    name: "ASHLEY KING", "KING, ASHLEY") in any patient's text.
    """

    def __init__(self, mrns: Iterable[str], names: Iterable[tuple[str, Iterable[str]]]) -> None:
        # MRNs under four characters ("1", "27") are numbers in ordinary text ("Type 2 diabetes").
        self._mrns = {m.casefold() for m in mrns if len(m) >= 4}
        self._own: dict[str, set[str]] = defaultdict(set)
        self._pairs: set[tuple[str, str]] = set()
        for mrn, values in names:
            words = [w for value in values for w in _words(str(value)) if len(w) > 1 and not w.isdigit()]
            self._own[mrn].update(words)
            self._pairs.update((a, b) for a in words for b in words if a != b)

    def find(self, mrn: str, text: str) -> list[str]:
        """The kinds of the site's identifiers in ``text`` of the patient ``mrn``."""
        found: list[str] = []
        tokens = {t.casefold() for t in _TOKEN.findall(text)} | {w for w in _words(text)}
        if tokens & self._mrns:
            found.append("an MRN of this site")
        words = _words(text)
        if set(words) & self._own.get(mrn, set()) or any(pair in self._pairs for pair in zip(words, words[1:])):
            found.append("a patient's name or address (from a column that is never sent)")
        return found
