"""PhysioNet/CinC Challenge 2020/2021 labels: the `#Dx:` header comment -> SNOMED-CT codes.

`#Dx:` holds comma-separated SNOMED-CT codes (empty entries such as `a,,b` occur and are skipped);
the early 2020 CPSC release wrote text labels instead (`Normal, AF, I-AVB, LBBB, RBBB, PAC, PVC,
STD, STE`), mapped here to the codes the Challenge itself gave those CPSC records. The Challenge
2021 scoring treats three pairs as one class; the first code of each pair represents it (as in the
Challenge's evaluate_model.py). Names and abbreviations come from cinc2021_dx_mapping.csv (package
data: the Challenge's dx_mapping_scored.csv + dx_mapping_unscored.csv).
"""

from __future__ import annotations

import csv
import functools
import importlib.resources

MAPPING_FILE = "cinc2021_dx_mapping.csv"

# Challenge 2021 scoring: "We score 713427006 and 59118001 as the same diagnosis", etc.
EQUIVALENT_CODES = (("713427006", "59118001"),  # CRBBB / RBBB
                    ("284470004", "63593006"),  # PAC / SVPB
                    ("427172004", "17338001"))  # PVC / VPB
CANONICAL = {other: pair[0] for pair in EQUIVALENT_CODES for other in pair[1:]}

# Early CPSC 2018 text labels -> the codes of the same records in the Challenge 2020/2021 data
# (the CPSC column of the mapping tables): PVC became 164884008 (ventricular ectopics).
CPSC_TEXT = {
    "NORMAL": "426783006",  # sinus rhythm (NSR)
    "AF": "164889003",
    "I-AVB": "270492004",  # 1st degree AV block (IAVB)
    "IAVB": "270492004",
    "LBBB": "164909002",
    "RBBB": "59118001",  # -> 713427006 after merging equivalents
    "PAC": "284470004",
    "PVC": "164884008",  # ventricular ectopics (VEB)
    "STD": "429622005",
    "STE": "164931005",
}


@functools.lru_cache(maxsize=1)
def dx_mapping() -> dict[str, dict]:
    """SNOMED code -> {'name', 'abbreviation', 'scored'} from the shipped Challenge tables."""
    text = importlib.resources.files("lamae_jax.data").joinpath(MAPPING_FILE).read_text()
    rows = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    return {r["SNOMEDCTCode"].strip(): {"name": r["Dx"], "abbreviation": r["Abbreviation"],
                                        "scored": r["scored"] == "1"} for r in rows}


@functools.lru_cache(maxsize=1)
def _abbreviation_index() -> dict[str, str]:
    """Upper-case abbreviation -> code (mapping table), for text labels other than CPSC's."""
    out: dict[str, str] = {}
    for code, info in dx_mapping().items():
        out.setdefault(info["abbreviation"].upper(), code)
    return out


def dx_field(comments: list[str]) -> str | None:
    """The text after `Dx:` in a header's comment lines ('#Dx: a,b' or '# Dx: a,b'); None if absent."""
    for c in comments:
        s = c.lstrip("#").strip()
        if s[:3].lower() == "dx:":
            return s[3:].strip()
    return None


def canonical_code(token: str) -> tuple[str, bool]:
    """(SNOMED code with equivalents merged, known). Text labels go through CPSC_TEXT and then the
    table's abbreviations; an unknown token is kept as written (known=False)."""
    t = token.strip()
    if t.isdigit():
        return CANONICAL.get(t, t), t in dx_mapping()
    code = CPSC_TEXT.get(t.upper()) or _abbreviation_index().get(t.upper())
    if code is None:
        return t, False
    return CANONICAL.get(code, code), True


def parse_dx(field: str | None) -> tuple[tuple[str, ...] | None, tuple[str, ...]]:
    """'a,,b' -> (sorted unique canonical codes, unknown tokens). (None, ()) when there is no
    label at all (no Dx line, or an empty one): such a record is unlabelled, not negative."""
    if field is None:
        return None, ()
    tokens = [t.strip() for t in field.replace(";", ",").split(",")]
    tokens = [t for t in tokens if t]
    if not tokens:
        return None, ()
    codes, unknown = set(), []
    for t in tokens:
        code, known = canonical_code(t)
        codes.add(code)
        if not known:
            unknown.append(t)
    return tuple(sorted(codes)), tuple(unknown)


def code_names(codes) -> dict[str, str]:
    """code -> 'ABBR' (or the code itself when it is not in the Challenge tables)."""
    table = dx_mapping()
    return {c: table[c]["abbreviation"] if c in table else c for c in codes}


def scored_codes(codes) -> list[str]:
    """The codes among `codes` that the Challenge 2021 scores."""
    table = dx_mapping()
    return [c for c in codes if c in table and table[c]["scored"]]
