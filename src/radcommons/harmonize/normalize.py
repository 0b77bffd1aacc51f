"""Normalisation of modalities and study descriptions.

Two levels:

* :func:`midrc_key` is MIDRC's own normalisation (upper case, white space collapsed, CR/DX
  and PT/CT aliased); the exact matcher and the conflict check use it so that our "exact"
  means what MIDRC's means.
* :func:`canonical_tokens` goes further for the long tail: punctuation and DICOM ``^``/``_``
  separators become spaces, contrast phrases (``W/O``, ``WWO``, ``WITH AND WITHOUT``, ``C+``),
  view counts (``1V``, ``1 VW``, ``SINGLE VIEW``), portable (``PORT``), body-region
  abbreviations (``ABD``, ``CAP``, ``THORAX``, ``CXR``) and site noise (``(Adult)``,
  ``-CS``, ``Customized``) are rewritten into one vocabulary, and word order is dropped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from functools import lru_cache

#: MIDRC's marker for an empty cell in its tables.
BLANK = "[blank]"

#: Modalities MIDRC treats as one when matching (a CR pair matches a DX row, PT matches CT).
MODALITY_ALIASES: dict[str, str] = {
    "CR": "CR/DX",
    "DX": "CR/DX",
    "DR": "CR/DX",
    "PT": "CT/PT",
    "CT": "CT/PT",
    "CTPT": "CT/PT",
    "PET": "CT/PT",
}

_SPACE = re.compile(r"\s+")
_MODALITY_SPLIT = re.compile(r"[\s,;/|\[\]'\"]+")


def clean_cell(value: str | None) -> str:
    """Strip a table cell, turning MIDRC's ``[blank]`` marker into the empty string."""
    text = (value or "").strip().strip('"').strip()
    return "" if text.lower() == BLANK else text


def normalize_space_case(text: str) -> str:
    """Upper case with white space collapsed: MIDRC's normalisation of a description."""
    return _SPACE.sub(" ", clean_cell(text)).upper()


def modality_tokens(modality: str) -> list[str]:
    """The modalities a modality cell names (``"CR, DX"`` -> ``["CR", "DX"]``)."""
    return [t for t in _MODALITY_SPLIT.split(clean_cell(modality).upper()) if t]


def modality_groups(modality: str) -> frozenset[str]:
    """The alias groups of a modality cell (``"CR, DX"`` -> ``{"CR/DX"}``); empty means any."""
    return frozenset(MODALITY_ALIASES.get(t, t) for t in modality_tokens(modality))


def midrc_key(modality: str, description: str) -> tuple[frozenset[str], str]:
    """MIDRC's matching key: (modality alias groups, upper-cased space-collapsed description)."""
    return modality_groups(modality), normalize_space_case(description)


# --- canonical tokens -------------------------------------------------------------------

def _trunk_oblique(match: re.Match[str]) -> str:
    """A side before OBLIQUE dropped when the exam is of the chest or abdomen (the side the view is taken
    from); kept for a limb's ("XR ANKLE RT OBLIQUE": a right ankle)."""
    if _TRUNK.search(match.string):
        return f" {match.group(1)} "
    return match.group(0)


_TRUNK = re.compile(r"\b(?:CHEST|THORAX|CXR|ABD\w*|KUB)\b")


# Phrase rewrites applied in order to the upper-cased text before it is split into words.
# Contrast first, because "W/O" and "W/" must be read before "/" becomes a space.
_PHRASES: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        (r"\bC\+", " W CONTRAST "),
        (r"\bC-(?=\s|$)", " WO CONTRAST "),
        (r"\bW\s*/\s*O\b", " WO "),
        (r"\bW\s+O\b(?!\s*&)", " WO "),
        (r"\bWITHOUT\b", " WO "),
        (r"\bW/(?=\S)", " W "),
        (r"\bW/", " W "),
        (r"\bWITH\b", " W "),
        (r"\bNON[\s-]*CON(?:TRAST|T)?\b", " WO CONTRAST "),
        (r"\bNO\s+(?:IV\s+)?CONTRAST\b", " WO CONTRAST "),
        (r"\bCONTRST\b|\bCONTRAS\b|\bCONTR\b|\bCONT\b|\bCON\b|\bCM\b|\bIVCON\b|\bIV CONT?\b", " CONTRAST "),
        (r"\b1\s*-\s*2\b|\b1\s+OR\s+2\b", " 1OR2 "),
        (r"\b2\s*-\s*3\b|\b2\s+OR\s+3\b|\b2\s*/\s*3\b", " 2OR3 "),
        (r"\b3\s+OR\s+4\b", " 3OR4 "),
        (r"\b(\d)\s*\+", r" \1PLUS "),
        (r"\b(\d)\s+OR\s+MORE\b", r" \1PLUS "),
        (r"\b(\d)\s*(?:VIEWS?|VWS?|V)\s+(?:MIN(?:IMUM)?|OR\s+MORE)\b", r" \1PLUS "),
        (r"\b(?:GE|MIN|MINIMUM|AT LEAST)\s+(\d)\b", r" \1PLUS "),
        (r"\bONE\s+(?=VIEW|VW)", " 1 "),
        (r"\bTWO\s+(?=VIEW|VW)", " 2 "),
        (r"\bTHREE\s+(?=VIEW|VW)", " 3 "),
        (r"\b(\d)\s*(?:VIEWS?|VWS?|V)\b", r" VIEWS\1 "),
        (r"\bC\s*/\s*A\s*/\s*P\b|\bC_A_P\b|\bC A P\b", " CHEST ABDOMEN PELVIS "),
        (r"\bA\s*/\s*P\b", " ABDOMEN PELVIS "),
        (r"\bA-P\b", " AP "),
        (r"\bX-?RAY\b", " XR "),
        (r"\b([CTL])-SPINE\b", r" \1SPINE "),
        (r"\bLOW\s+DOSE\b|\bLW\s+DOSE\b", " LOWDOSE "),
        (r"\bHIGH\s+RES(?:OLUTION)?\b|\bHI[\s_]RES\b", " HIRES "),
        (r"\bFLAT\s+PLATE\b", " SUPINE "),
        # An oblique or decubitus view names the side it is taken from, not the exam's side
        # ("XR CHEST LEFT DECUBITUS VIEW (RIGHT SIDE UP)" is a chest, not a left anything).
        (r"\b(?:RIGHT|LEFT|RT|LT)\s+OBL(?:IQUE)?\s+(?:AND|&)\s+(?:RIGHT|LEFT|RT|LT)\s+OBL(?:IQUE)?S?\b"
         r"|\bBOTH\s+OBL(?:IQUE)?S?\b|\bBILAT(?:ERAL)?\s+OBL(?:IQUE)?S?\b", " OBLIQUES "),
        (r"\b(?:RIGHT|LEFT|RT|LT)\s+(?:ANT(?:ERIOR)?\s+|POST(?:ERIOR)?\s+)?(DECUB(?:ITUS)?)\b", r" \1 "),
        # ... but "XR ANKLE RT OBLIQUE" is a right ankle: only a chest's or an abdomen's oblique is no side
        (r"\b(?:RIGHT|LEFT|RT|LT)\s+(?:ANT(?:ERIOR)?\s+|POST(?:ERIOR)?\s+)?(OBL(?:IQUE)?S?)\b", _trunk_oblique),
        (r"\(?\b(?:RIGHT|LEFT)\s+SIDE\s+(?:UP|DOWN)\b\)?", " "),
        (r"\bRUN\s*-?\s*OFF\b", " RUNOFF "),
        (r"\bCALCIUM\s+SCOR\w*|\bCALCM\s+SCR\w*|\bCA\s+SCOR\w*", " CALCIUM "),
        (r"\bPERFU\s+SION\b", " PERFUSION "),
        (r"\bTOTAL\s+SPINE\b|\bENTIRE\s+SPINE\b|\bCERVICAL\s+AND\s+THORACIC\s+AND\s+LUMBAR\s+SPINE\b",
         " CSPINE TSPINE LSPINE "),
        (r"\bTHORACIC\s+AND\s+LUMBAR\s+SPINE\b|\bTHOR\s+LMBR\s+SPIN\w*", " TSPINE LSPINE "),
        (r"\bWHOLE\s*BODY\b|\bSKULL\s+(?:BASE\s+)?TO\s+(?:MID\s*-?\s*)?THIGH\b"
         r"|\b(?:SKULL\s+)?VERTEX\s+TO\s+MID\s*-?\s*THIGH\b", " WHOLEBODY "),
        (r"\bCERVICAL\s+SPINE\b|\bSPINE\s+CERVICAL\b", " CSPINE "),
        (r"\bTHORACIC\s+SPINE\b|\bSPINE\s+THORACIC\b", " TSPINE "),
        (r"\bLUMBAR\s+SPINE\b|\bSPINE\s+LUMBAR\b", " LSPINE "),
        # Lumbosacral is the lumbar spine and the sacrum, as LOINC names it ("XR Spine Lumbar and
        # Sacrum 2 or 3 Views") and MIDRC's curators answer it.
        (r"\bLUMBO\s*SACRAL\s+SPINE\b|\bLUMBAR\s+SACRAL\s+SPINE\b|\bSPINE\s+LUMBAR\s+AND\s+SACRUM\b",
         " LSPINE SACRUM "),
        # CPT's "with pelvis when performed" names the hip's code, not a pelvis study.
        (r"\bW(?:ITH)?\s+PELVIS\s+WHEN\s+PERFORMED\b", " "),
    )
)

_SPLIT = re.compile(r"[^A-Z0-9]+")

#: Exam methods, in the order a description naming two is read as the first (PET/CT is a PET).
METHODS = ("PET", "XR", "CT", "MR", "US", "NM", "MG", "RF")

#: Body-region words (after the synonyms of :data:`_WORDS`).
REGIONS: frozenset[str] = frozenset(
    """CHEST ABDOMEN PELVIS HEAD NECK CSPINE TSPINE LSPINE SPINE HEART BREAST RIBS ESOPHAGUS FACE
    WHOLEBODY KNEE SHOULDER HIP FOOT ANKLE HAND WRIST CLAVICLE ELBOW KIDNEY FINGER FINGERS TOE
    TOES HUMERUS FEMUR TIBIA FIBULA FOREARM LEG THIGH SCAPULA STERNUM SACRUM COCCYX ORBIT
    ORBITS MANDIBLE PANCREAS LIVER BLADDER PROSTATE AORTA THYROID HYPOPHARYNX PHARYNX""".split()
)

# Word-level synonyms: each key becomes the listed canonical words.
_WORDS: dict[str, tuple[str, ...]] = {
    # methods
    "XR": ("XR",), "XRAY": ("XR",), "DXR": ("XR",), "DX": ("XR",), "CR": ("XR",),
    "DG": ("XR",), "RADIOGRAPH": ("XR",), "RADIOGRAPHY": ("XR",),
    "CXR": ("XR", "CHEST"), "PCXR": ("XR", "CHEST", "PORTABLE"), "DPCXR": ("XR", "CHEST"),
    "CT": ("CT",), "CAT": ("CT",),
    "CTA": ("CT", "ANGIO"), "ANGIO": ("ANGIO",), "ANGIOGRAM": ("ANGIO",), "ANGIOGRAPHY": ("ANGIO",),
    "ANG": ("ANGIO",), "ARTERIOGRAM": ("ANGIO",), "CCTA": ("CT", "ANGIO", "HEART"),
    "MR": ("MR",), "MRI": ("MR",), "MRA": ("MR", "ANGIO"),
    "US": ("US",), "ULTRASOUND": ("US",), "SONO": ("US",), "ECHO": ("US", "HEART"),
    "NM": ("NM",), "SPECT": ("NM",),
    "PET": ("PET",), "PT": ("PET",), "PETCT": ("PET", "CT"), "FDG": ("PET",),
    "MG": ("MG",), "MAMMO": ("MG", "BREAST"), "MAMMOGRAM": ("MG", "BREAST"),
    "MAMMOGRAPHY": ("MG", "BREAST"), "MAMMMO": ("MG", "BREAST"), "DBT": ("MG", "BREAST", "TOMO"),
    "FL": ("RF",), "FLUORO": ("RF",), "FLUOROSCOPY": ("RF",), "RF": ("RF",),
    # regions
    "CHEST": ("CHEST",), "THORAX": ("CHEST",), "THOR": ("CHEST",), "LUNG": ("CHEST",),
    "LUNGS": ("CHEST",), "THORACIC": ("CHEST",), "CH": ("CHEST",), "CHST": ("CHEST",),
    "ABD": ("ABDOMEN",), "ABDOMEN": ("ABDOMEN",), "ABDOMINAL": ("ABDOMEN",), "ABDOM": ("ABDOMEN",),
    "KUB": ("ABDOMEN",),
    "PEL": ("PELVIS",), "PELV": ("PELVIS",), "PELVIS": ("PELVIS",), "PELVIC": ("PELVIS",),
    "PELVI": ("PELVIS",),
    "CAP": ("CHEST", "ABDOMEN", "PELVIS"),
    "HEAD": ("HEAD",), "BRAIN": ("HEAD",), "SKULL": ("HEAD",),
    "NECK": ("NECK",), "SOFT": (), "TISSUE": (),
    "CSPINE": ("CSPINE",), "TSPINE": ("TSPINE",), "LSPINE": ("LSPINE",),
    "HEART": ("HEART",), "CARDIAC": ("HEART",), "CARD": ("HEART",), "CORONARY": ("HEART",),
    "BREAST": ("BREAST",), "RIBS": ("RIBS",), "RIB": ("RIBS",),
    "ESOPHAGUS": ("ESOPHAGUS",), "ESOPHAGRAM": ("ESOPHAGUS",), "ESOPHAGEAL": ("ESOPHAGUS",),
    "FACE": ("FACE",), "FACIAL": ("FACE",), "SINUS": ("FACE",), "SINUSES": ("FACE",),
    "WHOLEBODY": ("WHOLEBODY",),
    "MAXILLOFACIAL": ("FACE",), "MAXFACE": ("FACE",), "HEADNECK": ("HEAD", "NECK"),
    # plural body parts name the same region ("XR KNEES BILATERAL")
    "KNEES": ("KNEE",), "FEET": ("FOOT",), "HANDS": ("HAND",), "ANKLES": ("ANKLE",), "WRISTS": ("WRIST",),
    "HIPS": ("HIP",), "SHOULDERS": ("SHOULDER",), "ELBOWS": ("ELBOW",),
    "PULMONARY": ("PULMONARY",), "PULM": ("PULMONARY",),
    "AORTA": ("AORTA",), "AORTIC": ("AORTA",),
    # purpose
    "PE": ("PE",), "CTPE": ("CT", "PE"), "EMBOLISM": ("PE",), "EMBOLUS": ("PE",), "EMB": ("PE",),
    "EMBOLI": ("PE",),
    "SCREENING": ("SCREENING",), "SCREEN": ("SCREENING",), "SCRN": ("SCREENING",),
    "LDCT": ("CT", "SCREENING"),
    "CALCIUM": ("CALCIUM",),
    "BIOPSY": ("BIOPSY",), "BX": ("BIOPSY",), "GUIDANCE": ("GUIDANCE",),
    "TUBE": ("TUBE",), "LIMITED": ("LIMITED",), "LTD": ("LIMITED",),
    "BRONCHOSCOPY": ("BRONCHOSCOPY",), "BRONCH": ("BRONCHOSCOPY",),
    "INSPIR": ("INSPEXP",), "INSPIRATION": ("INSPEXP",), "EXPIR": ("INSPEXP",),
    "EXPIRATION": ("INSPEXP",),
    # views and position
    "PORT": ("PORTABLE",), "PORTABLE": ("PORTABLE",), "PORTABL": ("PORTABLE",),
    "LAT": ("LATERAL",), "LATERAL": ("LATERAL",), "LATS": ("LATERAL",),
    "FRONTAL": ("FRONTAL",), "AP": ("AP",), "PA": ("PA",), "POSTEROANTERIOR": ("PA",),
    "ANTEROPOSTERIOR": ("AP",),
    # plural obliques are two views (right and left): OBLIQUES counts the second
    "OBL": ("OBLIQUE",), "OBLS": ("OBLIQUE", "OBLIQUES"), "OBLIQUE": ("OBLIQUE",),
    "OBLIQUES": ("OBLIQUE", "OBLIQUES"),
    "DECUB": ("DECUBITUS",), "DECUBITUS": ("DECUBITUS",),
    "ERECT": ("UPRIGHT",), "UPRIGHT": ("UPRIGHT",), "SUPINE": ("SUPINE",),
    "1V": ("VIEWS1",), "1VW": ("VIEWS1",), "1VIEW": ("VIEWS1",), "SINGLE": ("VIEWS1",),
    "2V": ("VIEWS2",), "2VW": ("VIEWS2",), "2VIEW": ("VIEWS2",), "2VIEWS": ("VIEWS2",),
    "3V": ("VIEWS3",), "3VW": ("VIEWS3",),
    "1OR2": ("VIEWS1OR2",), "2OR3": ("VIEWS2OR3",), "3OR4": ("VIEWS3OR4",),
    "2PLUS": ("VIEWS2PLUS",), "3PLUS": ("VIEWS3PLUS",), "4PLUS": ("VIEWS4PLUS",),
    # qualifiers (what kind of exam within a method and region)
    "TTE": ("US", "HEART", "TRANSTHORACIC"), "TEE": ("US", "HEART", "TRANSESOPHAGEAL"),
    "TRANSVAG": ("TRANSVAGINAL",), "ENDOVAGINAL": ("TRANSVAGINAL",), "TV": ("TRANSVAGINAL",),
    "INTRAOP": ("SURGERY",), "INTRAOPERATIVE": ("SURGERY",), "SWALLOW": ("SWALLOWING",),
    # laterality
    "LEFT": ("LEFT",), "LT": ("LEFT",), "RIGHT": ("RIGHT",), "RT": ("RIGHT",),
    "BILATERAL": ("BILATERAL",), "BILAT": ("BILATERAL",), "BIL": ("BILATERAL",),
    # contrast
    "WWO": ("WWO",), "WO": ("WO",), "PLAIN": ("WO",), "NONCONTRAST": ("WO",), "NONCON": ("WO",),
    "HIRES": ("HIRES",), "LOWDOSE": ("LOWDOSE",),
}

#: Words that carry no meaning for the code: site suffixes, protocol chatter, filler.
NOISE: frozenset[str] = frozenset(
    """ADULT ADULTS CUSTOMIZED GR CS RAD S O EXAM EXAMS STUDY PROTOCOL PROTOCOLS IMAGE IMAGES
    IMAGING IMG OF THE FOR AND OR TO ONLY IN ON AT A AN BY DIAG DIAGNOSTIC PROCEDURE
    NO STND STANDARD GE SIEMENS ROUTINE VIEW VIEWS VW VWS PROJECTIONS SERIES""".split()
)


def _rewrite(text: str) -> str:
    for pattern, replacement in _PHRASES:
        text = pattern.sub(replacement, text)
    return text


# Pure functions of a string, called for every candidate: cache them (sites repeat themselves).
@lru_cache(maxsize=65536)
def _words_cached(description: str) -> tuple[str, ...]:
    return tuple(_words_uncached(description))


def _words(description: str) -> list[str]:
    return list(_words_cached(description))


@lru_cache(maxsize=65536)
def _rewritten(description: str) -> str:
    """Upper-cased text with ``^``/``_`` as spaces and :data:`_PHRASES` rewritten."""
    text = _rewrite(" " + normalize_space_case(description).replace("^", " ").replace("_", " ") + " ")
    # Re-run: separators like "_" hid phrases ("CHEST_W/O") until they were spaces.
    return _rewrite(text)


def _synonyms(text: str) -> list[str]:
    """Split words of rewritten text, each replaced by its canonical words (:data:`_WORDS`)."""
    return [canonical for word in _SPLIT.split(text) if word for canonical in _WORDS.get(word, (word,))]


def _words_uncached(description: str) -> list[str]:
    """Upper-cased, rewritten, split words, synonyms applied, noise kept (for contrast reading)."""
    return _synonyms(_rewritten(description))


#: Where a description may join a second exam to the first ("CTA CHEST AND CT ABDOMEN", "MRI
#: BRAIN, MRA NECK", "CCTA HEART W CONTRAST+CT CHEST").
_JOINS = re.compile(r"\s+AND\s+|\s*[+,/&;]\s*|\s+-\s+")


@lru_cache(maxsize=65536)
def exams_named(description: str) -> int:
    """How many exams a description names, each a method and a body region of its own.

    A part after " AND ", "+", ",", "/", "&", ";" or " - " starts another exam when its first
    word is a method: "CTA CHEST AND CT ABDOMEN AND PELVIS W CONT" names 2 (an angiogram of the
    chest and a CT of the abdomen and pelvis, as LOINC's combination codes name them: "CT
    Abdomen and Pelvis and CT angiogram Abdominal aorta"); "PET/CT SKULL BASE TO MID THIGH" 1
    (the PET states no region of its own); "CT CHEST W, ABDOMEN PELVIS WWO" 1; "NM SPECT/CT" 0.
    """
    exams: list[list[str]] = [[]]
    for part in _JOINS.split(_rewritten(description)):
        words = _synonyms(part)
        if words and words[0] in METHODS and exams[-1]:
            exams.append([])
        exams[-1].extend(words)
    return sum(1 for words in exams if set(words) & set(METHODS) and set(words) & REGIONS)


_CONTRAST_FOLLOWERS = frozenset({"CONTRAST", "IV", ""})


def _read_contrast(words: list[str]) -> tuple[str | None, list[str]]:
    """Find the contrast timing (``W``, ``WO``, ``WWO`` or None) and drop its words.

    "W" alone is ambiguous ("W CHEST IMAGES", "W UPRIGHT"): it counts as contrast only when
    followed by a contrast word, by nothing, or next to a "WO" ("W WO", "WO AND W").
    """
    meaningful = [w for w in words if w not in NOISE or w in {"AND", "OR"}]
    has_wo = has_w = False
    kept: list[str] = []
    i = 0
    n = len(meaningful)
    while i < n:
        word = meaningful[i]
        if word == "WWO":
            has_w = has_wo = True
        elif word == "WO":
            has_wo = True
        elif word == "W":
            # "W" is contrast when it ends the text, precedes a contrast word or pairs with WO.
            rest = [m for m in meaningful[i + 1 :] if m not in {"AND", "OR"}]
            following = rest[0] if rest else ""
            if following in _CONTRAST_FOLLOWERS or following in {"WO", "W"} or (
                i > 0 and meaningful[i - 1] in {"WO", "AND"} and has_wo
            ):
                has_w = True
            else:
                kept.append(word)
        elif word == "CONTRAST":
            # A bare "CONTRAST"/"+ CONT" without W/WO means "with".
            prev = [m for m in meaningful[:i] if m not in {"IV", "AND", "OR"}]
            if not (prev and prev[-1] in {"W", "WO", "WWO"}):
                has_w = True
        elif word in {"AND", "OR"}:
            pass
        else:
            kept.append(word)
        i += 1
    if has_w and has_wo:
        return "WWO", kept
    if has_wo:
        return "WO", kept
    if has_w:
        return "W", kept
    return None, kept


@lru_cache(maxsize=65536)
def canonical_tokens(description: str, modality: str = "") -> tuple[str, ...]:
    """Sorted, de-duplicated canonical words of a description, with a contrast word if any.

    >>> canonical_tokens("XR PORT CHEST 1V")
    ('CHEST', 'PORTABLE', 'VIEWS1', 'XR')
    >>> canonical_tokens("Thorax^CHEST_WITHOUT (Adult)")
    ('CHEST', 'CONTRAST_WO')
    """
    contrast, words = _read_contrast(_words(description))
    # A leftover "W" joined words ("W CHEST IMAGES", "W UPRIGHT"); it says nothing itself.
    tokens = {w for w in words if w not in NOISE and w not in {"IV", "W"} and not w.isdigit()}
    groups = modality_groups(modality)
    if "AP" in tokens and "XR" not in tokens and groups and "CR/DX" not in groups:
        # On CT and MR "AP" is abdomen and pelvis ("CT_AP_WITH"), not an anteroposterior view.
        tokens.discard("AP")
        tokens.update(("ABDOMEN", "PELVIS"))
    if contrast:
        tokens.add("CONTRAST_" + contrast)
    exams = exams_named(description)
    if exams > 1:
        # Two exams joined are no description of one: only a combination code answers them.
        # The marker has a "#", which no word of a description keeps (_SPLIT), so a raw word
        # "EXAMS2" is no such marker.
        tokens.add(f"EXAMS#{exams}")
    return tuple(sorted(tokens))


def contrast_of(description: str) -> str | None:
    """The contrast timing a description states: ``W``, ``WO``, ``WWO`` or None."""
    return _read_contrast(_words(description))[0]


def canonical_text(description: str) -> str:
    """:func:`canonical_tokens` joined by spaces: a key that ignores word order and spelling."""
    return " ".join(canonical_tokens(description))


def join_words(words: Iterable[str]) -> str:
    """Space-joined words (for TF-IDF documents)."""
    return " ".join(words)
