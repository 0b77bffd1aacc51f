"""Invented name, street and institution parts for synthetic people and places.

Common US name parts, combined at random; no combination refers to a real record.
"""

from __future__ import annotations

FAMILY_NAMES: tuple[str, ...] = (
    "SMITH", "JOHNSON", "WILLIAMS", "BROWN", "JONES", "GARCIA", "MILLER", "DAVIS", "RODRIGUEZ",
    "MARTINEZ", "HERNANDEZ", "LOPEZ", "GONZALEZ", "WILSON", "ANDERSON", "THOMAS", "TAYLOR",
    "MOORE", "JACKSON", "MARTIN", "LEE", "PEREZ", "THOMPSON", "WHITE", "HARRIS", "SANCHEZ",
    "CLARK", "RAMIREZ", "LEWIS", "ROBINSON", "WALKER", "YOUNG", "ALLEN", "KING", "WRIGHT",
    "SCOTT", "TORRES", "NGUYEN", "HILL", "FLORES", "GREEN", "ADAMS", "NELSON", "BAKER", "HALL",
    "RIVERA", "CAMPBELL", "MITCHELL", "CARTER", "ROBERTS", "CHEN", "WANG", "KIM", "PATEL",
    "OKAFOR", "OCONNOR", "DOE", "VAN DER BERG", "ST JOHN", "MCALLISTER",
)
FEMALE_GIVEN: tuple[str, ...] = (
    "MARY", "PATRICIA", "JENNIFER", "LINDA", "ELIZABETH", "BARBARA", "SUSAN", "JESSICA", "SARAH",
    "KAREN", "NANCY", "LISA", "BETTY", "MARGARET", "SANDRA", "ASHLEY", "EMILY", "DONNA", "MICHELLE",
    "CAROL", "AMANDA", "MELISSA", "DEBORAH", "STEPHANIE", "MARIA", "ANA", "MEI", "AISHA", "JANE",
)
MALE_GIVEN: tuple[str, ...] = (
    "JAMES", "ROBERT", "JOHN", "MICHAEL", "DAVID", "WILLIAM", "RICHARD", "JOSEPH", "THOMAS",
    "CHARLES", "CHRISTOPHER", "DANIEL", "MATTHEW", "ANTHONY", "MARK", "DONALD", "STEVEN", "PAUL",
    "ANDREW", "JOSHUA", "KENNETH", "KEVIN", "BRIAN", "GEORGE", "JOSE", "LUIS", "WEI", "OMAR",
)
MIDDLE_INITIALS = "ABCDEFGHJKLMNPRSTW"
STREETS: tuple[str, ...] = (
    "MAIN ST", "OAK AVE", "MAPLE DR", "CEDAR LN", "PINE ST", "ELM ST", "WASHINGTON BLVD",
    "LAKE RD", "HILL ST", "PARK AVE", "SUNSET BLVD", "MARKET ST", "CHESTNUT ST", "WALNUT ST",
)
INSTITUTIONS: tuple[tuple[str, str, str], ...] = (
    # (institution name, city, state): invented names in the cities whose ZIP3 MIDRC's export holds
    ("Bayview Memorial Hospital", "San Francisco", "CA"),
    ("Schuylkill University Medical Center", "Philadelphia", "PA"),
    ("Lakeside General Hospital", "Oakland", "CA"),
    ("St. Agnes Regional Health", "Camden", "NJ"),
    ("Riverbend Community Hospital", "Daly City", "CA"),
    ("Northgate Medical Center", "Norristown", "PA"),
)
DEPARTMENTS: tuple[str, ...] = ("RADIOLOGY", "Diagnostic Imaging", "ED RADIOLOGY", "IMAGING SVCS")
