"""STREET_ADDRESS without a model: street lines in the common European and North American
formats, with their unit, postcode and city when they follow.

Street lines (a house number is always required; it is what makes a street an address):

* number first, street type last (US, UK, IE, CA, AU): ``1600 Pennsylvania Ave NW``,
  ``221B Baker Street``, ``350 West 42nd Street``; USPS Publication 28 suffixes and the
  British ones (``Close``, ``Mews``, ``Crescent``);
* number first, type first (FR): ``12 rue de Rivoli``, ``8, boulevard Nicolas Olivier``;
* type first, number last (ES, IT, PT, BR, PL, FR): ``Calle Mayor 5``, ``Via Roma, 10``,
  ``Rua Augusta, 100``, ``ul. Marszałkowska 10/4``;
* compound name, number last (DE, AT, CH, NL, Nordic): ``Hauptstraße 5``,
  ``Karl-Marx-Allee 3a``, ``Keizersgracht 123``, ``Kyrkogatan 7``, ``Emdrupgårds Allé 4``;
* a British flat without a house number: ``Flat 83m, Henderson Plaza``.

Then, separated by commas or spaces: units (``Apt. 5B``, ``Suite 200``, ``Puerta 2``),
and a postcode with its city (``10115 Berlin``, ``SW1A 1AA``, ``Springfield, IL 62704``,
``3623 HY Alkmaar``, ``Santa Cruz de Tenerife, 10936``). A city with no postcode stays.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from hermes_fed.privacy.name_recognizer import LOW, UP, words
from hermes_fed.privacy.rules import Gate, Rule, RuleRecognizer

#: USPS Publication 28 street suffixes (full and abbreviated) and British/Irish ones.
EN_SUFFIXES = words("""
Alley Aly Annex Anx Arcade Arc Avenue Ave Av Bayou Byu Beach Bch Bend Bnd Bluff Blf
Bluffs Bottom Btm Boulevard Blvd Branch Br Bridge Brg Brook Brk Brooks Burg Burgs Bypass
Byp Camp Cp Canyon Cyn Cape Cpe Causeway Cswy Center Ctr Centre Centers Circle Cir
Circles Cliff Clf Cliffs Club Common Cmn Commons Corner Cor Corners Course Crse Court Ct
Courts Cove Cv Coves Creek Crk Crescent Cres Crest Crossing Xing Crossroad Curve Dale Dl
Dam Dm Divide Dv Drive Dr Drives Estate Est Estates Expressway Expy Extension Ext
Extensions Falls Fls Ferry Fry Field Fld Fields Flat Flt Flats Ford Frd Fords Forest
Frst Forge Frg Forges Fork Frk Forks Fort Ft Freeway Fwy Garden Gdn Gardens Gdns Gateway
Gtwy Glen Gln Glens Green Grn Greens Grove Grv Groves Harbor Hbr Harbour Harbors Haven
Hvn Heights Hts Highway Hwy Hill Hl Hills Hls Hollow Holw Inlet Island Is Islands Isle
Junction Jct Junctions Key Ky Keys Knoll Knl Knolls Lake Lk Lakes Land Landing Lndg Lane
Ln Light Lgt Lights Loaf Lock Lck Locks Lodge Ldg Loop Mall Manor Mnr Manors Meadow Mdw
Meadows Mdws Mews Mill Ml Mills Mission Msn Motorway Mount Mt Mountain Mtn Mountains
Neck Nck Orchard Orch Oval Overpass Opas Park Parks Parkway Pkwy Parkways Pass Passage
Psge Path Pike Pine Pines Pnes Place Pl Plain Pln Plains Plaza Plz Point Pt Points Port
Prt Ports Prairie Pr Radial Radl Ramp Ranch Rnch Rapid Rpd Rapids Rest Rst Ridge Rdg
Ridges River Riv Road Rd Roads Route Rte Row Rue Run Shoal Shl Shoals Shore Shr Shores
Skyway Skwy Spring Spg Springs Spur Spurs Square Sq Squares Station Sta Stravenue Stra
Stream Strm Street St Streets Summit Smt Terrace Ter Throughway Trwy Trace Trce Track
Trak Trafficway Trfy Trail Trl Trailer Trlr Tunnel Tunl Turnpike Tpke Underpass Upas
Union Un Unions Valley Vly Valleys Viaduct Via Vw View Views Village Vlg Villages Ville
Vl Vista Vis Walk Walks Wall Way Ways Well Wl Wells Close Cl Mews Parade Pde Esplanade
Embankment Quay Wharf Rise Vale Wynd Gate Yard Chase Drove Hey Croft Brow Fold Side
Gardens Grange Approach Broadway Promenade Boardwalk Anchorage Boulevarde Brace Circuit
Cct Concourse Copse Corso Crossway Cul-de-sac Distributor Edge Elbow End Entrance
Fairway Firetrail Frontage Gap Glade Grand Highroad Interchange Link Lookout Nook
Outlook Pocket Precinct Quays Ramble Reach Reserve Retreat Ridgeway Serviceway Strand
Tarn Thoroughfare Tollway Top Tor Towers Turn Walkway Waterway Wynd
""")
#: Street types written before the name (FR, ES, IT, PT, BR, PL, RO; case-insensitive).
TYPE_FIRST = words("""
rue avenue av. ave. boulevard bd bd. bld place pl. allée allee chemin impasse quai route
cours square passage sentier faubourg voie rond-point calle c/ avenida avda. avda paseo
plaza pza. camino carretera ctra. ronda travesía travesia callejón callejon cañada
glorieta rambla urbanización urbanizacion acceso alameda bajada cuesta pasaje vía via
viale piazza p.za piazzale corso vicolo largo contrada borgo strada rotonda lungomare
salita stradone rua r. travessa tv. estrada praça praca pç. rodovia quadra setor recanto
residencial conjunto vila lote loteamento chácara chacara núcleo nucleo passarela jardim
parque beco ladeira ulica ul. aleja al. plac pl osiedle os. rynek bulwar strada str.
calea bulevardul splaiul carrera pasadizo ramal vereda partida polígono poligono ruta
sendero prolongación prolongacion retorno peatonal cerrada circuito privada andador
calzada periférico periferico diagonal eje boulevard blvd. incrocio piazzetta canale
circonvallazione rione traversa stretto lungo galleria av viaducto continuación
continuacion vial c. lagoa lago morro sítio sitio área area esplanada condomínio
condominio chácara fazenda colônia colonia
""")
#: Endings of one-word street names (DE, AT, CH, NL, DK, NO, SE; case-insensitive).
COMPOUND_SUFFIXES = words("""
straße strasse str. str weg gasse platz allee ring damm ufer chaussee steig pfad markt
hof graben kai zeile promenade stieg berg garten park feld höhe hoehe brücke bruecke tor
winkel siedlung straat laan plein gracht kade singel dijk steeg pad dreef baan wal vej
gade allé vænget stræde plads torv gatan vägen gränd stigen backen torget gata veien
vegen gaten plass stien bakken boulevard kade svingen lia åsen haugen jordet tunet
kroken lunden toppen sletta plassen brekka dalen engen heia kollen moen odden ringen
skogen tangen vika grenda alléen holtet berget krenten
""")
_SEP_WORDS = ("de", "del", "de la", "de las", "de los", "la", "las", "los", "da", "do",
              "dos", "das", "di", "della", "delle", "dei", "degli", "du", "des", "d'", "l'",
              "of", "the", "von", "van", "der", "e", "y", "i")
_NUM = (r"(?:\d{1,5}[A-Za-z]?(?:[\-/]\d{1,5}[A-Za-z]?)?(?:[ ]?(?:bis|ter|quater)\b)?"
        r"|[Ss]/[Nn])")
_CAP = rf"(?:{UP}[\w'’.\-]*|\d{{1,3}}(?:st|nd|rd|th|º|ª|\.)?)"
_SEP = "(?:" + "|".join(re.escape(w) for w in sorted(_SEP_WORDS, key=len, reverse=True)) + ")"
_NAME = rf"{_CAP}(?:[ ](?:{_SEP}[ ]?)*{_CAP}){{0,4}}"
_DIR = r"(?:[ ](?:N|S|E|W|NE|NW|SE|SW|North|South|East|West)\b\.?)"
_EN_SUFFIX = r"(?:" + "|".join(sorted({re.escape(s) for s in EN_SUFFIXES}, key=len,
                                        reverse=True)) + r")"
_TYPE_FIRST = r"(?i:" + "|".join(sorted({re.escape(s) for s in TYPE_FIRST}, key=len,
                                         reverse=True)) + r")"
_COMPOUND = r"(?i:" + "|".join(sorted({re.escape(s) for s in COMPOUND_SUFFIXES}, key=len,
                                       reverse=True)) + r")"
_START = r"(?<![\w.\-/:#+@])"

NUMBER_FIRST = re.compile(
    rf"{_START}{_NUM},?[ ]+(?:{_NAME})[ ]{_EN_SUFFIX}\b\.?{_DIR}?"  # 221B Baker Street
    rf"|{_START}{_NUM},?[ ]+{_TYPE_FIRST}[ ]+(?:{_SEP}[ ]?)*{_NAME}"  # 12 rue de Rivoli
)
TYPE_FIRST_LAST_NUMBER = re.compile(
    rf"(?<![\w\-]){_TYPE_FIRST}[ ]+(?:{_SEP}[ ]?)*{_NAME},?[ ]+(?:n\.?[º°o]?[ ]?|nº[ ]?)?"
    rf"{_NUM}(?![\w\-]|\.\d)"
)
#: Where a TYPE_FIRST_LAST_NUMBER match may start: its lookbehind, then up to the next space
#: no more characters than the longest street type (the type is followed by a space).
_TYPE_WORDS = frozenset(w.lower() for w in TYPE_FIRST)
_TYPE_CANDIDATE = re.compile(
    rf"(?<![\w\-])(?=([^ ]{{1,{max(map(len, TYPE_FIRST))}}})[ ])")


def type_first_matches(text: str) -> Iterator[re.Match[str]]:
    """Exactly ``TYPE_FIRST_LAST_NUMBER.finditer(text)``, a few times faster.

    The pattern opens with a case-insensitive alternation of ~250 street types, which
    ``re`` tries one by one at every word start. A match's type runs from its start to the
    next space (``{type}[ ]+``), so only starts whose word up to that space is a type (in
    lower case; any word with a non-ASCII character is tried, since case-insensitive
    matching of those is ``re``'s to decide) can start a match; the pattern is tried at
    those, left to right, from the end of the last match, as ``finditer`` does (its
    lookbehind sees the text before the start). Most texts have no such word at all: for
    an ASCII text that is one ``findall`` and a set test, without a loop in Python.
    """
    if text.isascii() and _TYPE_WORDS.isdisjoint(map(str.lower, _TYPE_CANDIDATE.findall(text))):
        return
    end = 0
    for candidate in _TYPE_CANDIDATE.finditer(text):
        start = candidate.start()
        if start < end:
            continue
        word = candidate.group(1)
        if word.isascii() and word.lower() not in _TYPE_WORDS:
            continue
        m = TYPE_FIRST_LAST_NUMBER.match(text, start)
        if m is not None:
            yield m
            end = m.end()


COMPOUND_NAME = re.compile(
    rf"(?<![\w\-]){UP}[\w\-]*?{_COMPOUND}\.?[ ]+{_NUM}(?![\w\-]|\.\d)"
    rf"|(?<![\w\-]){UP}[\w\-]+[ ](?:{_SEP}[ ])?(?={UP}){_COMPOUND}\.?[ ]+{_NUM}"
    rf"(?![\w\-]|\.\d)"
)
# "<Name> <number>, <postcode> <City>": a postcode makes any one-word street an address
NAME_NUMBER_POSTCODE = re.compile(
    rf"(?<![\w\-]){UP}[\w\-]+(?:[ ]{UP}[\w\-]+)?[ ]{_NUM}"
    rf"(?=,?[ ](?:(?:[A-Z]{{1,2}}-)?\d{{4,5}}[ ]{UP}|\d{{4}}[ ]?[A-Z]{{2}}[ ,]"
    rf"|\d{{2}}-\d{{3}}[ ]{UP}))"
)
FLAT_FIRST = re.compile(
    rf"(?<![\w\-])(?:Flat|Apartment|Studio|Unit|Suite)[ ]\w{{1,5}},?[ ]{_NAME}[ ]{_EN_SUFFIX}\b"
)
UNIT = re.compile(
    r"[ ]?,?[ ](?:(?i:apt\.?|apartment|suite|ste\.?|unit|flat|floor|fl\.?|room|rm\.?|bldg\.?|"
    r"edif\.?|depto\.?|dpto\.?|interior|int|"
    r"building|puerta|piso|planta|escalera|esc\.|appartamento|app\.?|interno|int\.|scala|"
    r"piano|apto\.?|apartamento|bloco|casa|sala|andar|etage|stiege|top|bus|boîte|bte|"
    r"lok\.?|m\.)[ ]?#?[\w\-]{1,6}|#[ ]?\d{1,5}[A-Za-z]?|\d{1,2}[º°ª][ ]?[A-Za-z]?)"
)
_CITY_WORD = rf"(?:{UP}[\w'’.\-]*|\d{{1,3}}[ªº])"
_CITY = rf"{_CITY_WORD}(?:[ ](?:{_SEP}[ ])*{_CITY_WORD}){{0,4}}"
# before a postcode a city may hold lower-case words too ("San Asunción los altos")
_CITY_LOOSE = rf"{_CITY_WORD}(?:[ ](?:{_CITY_WORD}|{LOW}+)){{0,5}}"
POSTCODE_CITY = re.compile(
    r",?[ ](?:"
    rf"(?:(?:[A-Z]{{1,2}}-)?\d{{4,5}}|\d{{2}}-\d{{3}}|\d{{4}}-\d{{3}}|\d{{5}}-?\d{{3}}"
    rf"|\d{{4}}[ ]?[A-Z]{{2}}),?[ ]{_CITY}(?:[ ](?:\(\w{{2}}\)|/[ ]?[A-Z]{{2}}))?"  # 10115 Berlin
    rf"|{_CITY_LOOSE},?[ ](?:[A-Z]{{2,4}},?[ ])?\d{{4,5}}(?:-\d{{3,4}})?(?![\w\-])"  # Lake Jesse, AZ 30640
    rf"|[A-Z]\d[\dW][ ]?[A-Z\d]{{4}}(?:[ ]{_CITY})?(?![\w])"  # Eircode A96 44WV
    rf"|(?:{_CITY},?[ ])?[A-Z]{{1,2}}\d[A-Z\d]?[ ]?\d[A-Z]{{2}}(?![\w])"  # Reading RG1 3AR
    rf"|(?:{_CITY},?[ ])?[A-Z]\d[A-Z][ ]?\d[A-Z]\d(?![\w])"  # Toronto, ON M5V 3L9
    r")"
)
_CITY_PART = re.compile(rf",[ ]{_CITY}(?=,[ ])")
_UNIT_BEFORE = re.compile(
    r"(?i:apt\.?|apartment|suite|ste\.?|unit|flat|level|lvl\.?|shop)(?:[ ]?#?[\w\-]{1,6})?,?[ ]\Z")


class StreetAddressRecognizer(RuleRecognizer):
    """STREET_ADDRESS spans (module docstring); the gate is a house number near a word."""

    def __init__(self) -> None:
        super().__init__("StreetAddressRecognizer", Gate(
            regex=r"\d[,.A-Za-z]?[ ]|[^\W\d_][,.]?[ ]\d|[Ss]/[Nn]"),
                         [])
        self.supported_entities = ["STREET_ADDRESS"]
        self._rule = Rule("street-line", "STREET_ADDRESS", NUMBER_FIRST, 0.75)

    def find(self, text: str, folded: str | None = None) -> list[Any]:
        if self.gate is not None and not self.gate.open(text, folded or ""):
            return []
        spans: list[tuple[int, int]] = []
        for matches in (NUMBER_FIRST.finditer(text), type_first_matches(text),
                        COMPOUND_NAME.finditer(text), FLAT_FIRST.finditer(text),
                        NAME_NUMBER_POSTCODE.finditer(text)):
            for m in matches:
                start = m.start()
                end = m.end()
                if text[end - 1] == "." and len(text[:end - 1].rsplit(" ", 1)[-1]) > 4:
                    end -= 1  # a sentence's period after "Street", not "St."
                unit = _UNIT_BEFORE.search(text, max(0, start - 24), start)
                spans.append((unit.start() if unit else start, self._extend(text, end)))
        out: list[Any] = []
        last_end = -1
        for start, end in sorted(spans, key=lambda s: (s[0], -s[1])):
            if start >= last_end or end > last_end:
                out.append(self._result(self._rule, start, end, 0.75))
                last_end = end
        return out

    @staticmethod
    def _extend(text: str, end: int) -> int:
        """Units, then a postcode with its city, after a street line."""
        for _ in range(4):
            m = UNIT.match(text, end)
            if m is None:
                break
            end = m.end()
        m = POSTCODE_CITY.match(text, end)
        if m is not None:
            return m.end()
        # a neighbourhood or city line before the postcode line ("São Jorge, 62328-601 X")
        city = _CITY_PART.match(text, end)
        if city is not None:
            m = POSTCODE_CITY.match(text, city.end())
            if m is not None:
                return m.end()
        return end
