"""Entity fingerprints: what survives translation of a news story (names, places, numbers, dates).

A French, an English and a German report of the same event share almost no words, but they name the
same people and places, quote the same figures and give the same dates. The fingerprint of an
article is the set of those items, each a short string with a kind prefix:

- ``n:<key>``  a capitalised word that is not a common word: a person, place or organisation name. The
  key is transliterated (Cyrillic, Greek, accented Latin), lower-cased and reduced to a spelling
  skeleton so that Pentagon/Pentagone/Pentágono, Selenskyj/Zelensky/Zelenskyy or Buccino/Bucino give
  one key; particles (al-, el-, ez-, von, de…) and a German genitive "s" are dropped.
- ``c:<concept>`` a name whose spelling differs across languages, from a small built-in table of
  exonyms and demonyms (Syria/Syrie/Syrien/Siria/syrische…, US/USA/États-Unis/Vereinigte Staaten/
  américain…, Deir ez-Zor spellings). Countries, capitals standing for governments and large
  organisations are *generic*: they say what a story is about, not which event it is, so they weigh
  little and are never used to look up candidates.
- ``d:MM-DD`` a day of a month in any of the supported languages (15 août, 15. August, Aug. 15, 15 de agosto).
- ``y:YYYY`` a year; ``#:N`` any other number of at least two digits (thousands separators removed).

Scripts without capital letters (Chinese, Arabic) contribute only numbers, dates and Latin names
quoted in them. Common nouns that German capitalises become ``n:`` items too; they rarely match
another language and document frequencies weigh them down within German.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from text_unidecode import unidecode

# ---------------------------------------------------------------------------------------------------
# Built-in table: concepts whose names differ across languages. Keep it small: only names that the
# spelling skeleton below cannot bring together, and only frequent news subjects.
# Each entry: concept -> (generic?, forms). A form is matched on lower-cased, transliterated tokens;
# "*" at the end of a form expands to the adjective endings of en/fr/de/es/it/pt/pl; a form written
# in capitals matches only when written in capitals in the text (US, UN, EU: "us", "un", "eu" are
# common words in English, French and Portuguese).
# ---------------------------------------------------------------------------------------------------


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_ENDINGS = ("", "s", "e", "es", "en", "er", "em", "ne", "nes", "a", "as", "o", "os", "i", "ie", "iego", "iej",
            "ich", "im", "ym", "ch", "ii", "iia", "ia")

_CONCEPTS: dict[str, tuple[bool, str]] = {
    "usa": (True, "US USA U.S. U.S.A. ABD SShA united-states etats-unis vereinigte-staaten vereinigten-staaten "
                  "estados-unidos stati-uniti stany-zjednoczone amerika american* americain* amerikanisch* "
                  "americano* amerykansk* amerikan* amerikanskii*"),
    "uk": (True, "UK U.K. united-kingdom royaume-uni vereinigtes-konigreich reino-unido regno-unito britain "
                 "grossbritannien grande-bretagne gran-bretana british* britannique* britisch* britanic* "
                 "brytyjsk* ingiltere"),
    "russia": (True, "russia russie russland rusia rosja rusya rossiia rossii russian* russe* russisch* ruso* "
                     "russo* rosyjsk* rus rossiiskii*"),
    "ukraine": (True, "ukraine ukraina ucrania ucraina ukrayna ukrainian* ukrainien* ukrainisch* ucraniano* "
                      "ucraino* ukrainsk* ukraiinsk*"),
    "china": (True, "china chine cina chiny cin kitai chinese* chinois* chinesisch* chino* cinese* chinsk* "
                    "kitaisk*"),
    "iran": (True, "iran iranian* iranien* iranisch* irani* iranian* iransk* iranskii*"),
    "iraq": (True, "iraq irak irakien* irakisch* iraqi* iraqui* iracheno* iracki*"),
    "syria": (True, "syria syrie syrien siria suriye sirii siriia syrian* syrien* syrisch* sirio* siriano* "
                    "syryjsk* siriisk*"),
    "israel": (True, "israel izrael israil israeli* israelien* israelisch* israeli* israeliano* izraelsk* "
                     "israelita*"),
    "germany": (True, "germany allemagne deutschland alemania germania niemcy almanya germaniia german* "
                      "allemand* deutsch* aleman* tedesco* niemieck*"),
    "france": (True, "france frankreich francia francja fransa frantsiia french* francais* franzosisch* "
                     "frances* francese* francusk*"),
    "turkey": (True, "turkey turquie turkei turquia turchia turcja turkiye turtsiia turkish* turc* turque* "
                     "turkisch* turco* tureck*"),
    "eu": (True, "EU UE european-union union-europeenne europaische-union union-europea unione-europea "
                 "unia-europejska"),
    "un": (True, "UN ONU UNO OON united-nations nations-unies vereinte-nationen naciones-unidas nazioni-unite"),
    "nato": (True, "nato otan nata"),
    "isis": (True, "ISIS ISIL EI IG Daesh Daech islamic-state etat-islamique islamischer-staat islamischen-staat "
                   "estado-islamico stato-islamico panstwo-islamskie"),
    "white-house": (True, "white-house maison-blanche weisse-haus weissen-haus casa-blanca casa-bianca "
                          "bialy-dom beyaz-saray"),
    "moscow": (True, "moscow moscou moskau moscu mosca moskwa moskova moskva"),
    "beijing": (True, "beijing pekin peking pechino pekinie"),
    "kyiv": (True, "kyiv kiev kiew kijow kiiev kiiv"),
    "brussels": (True, "brussels bruxelles brussel brussel bruselas bruxelas bruksela"),
    "london": (True, "london londres londra londyn"),
    "europe": (True, "europe europa avrupa european* europeen* europaisch* europeo* europejsk*"),
    "deir-ez-zor": (False, "deir-ez-zor deir-ezzor deir-el-zor deir-al-zor deir-ez-zour deir-al-zour deir-el-zour "
                           "dayr-az-zawr deir-az-zor deir-es-sor deir-ez-sor deir-essor deir-ezzour"),
    "gaza": (False, "gaza gazastreifen"),
}

_PARTICLES = _words("al el ez az as ad ar at an ash ad-din bin ibn bint abu de da di du del della des la le "
                       "van von der den ten ter y e o")

# Function words and other capitalised non-names in the supported Latin-script languages.
_STOP = _words("""
a an and are as at be but by for from had has have he her his i if in is it its my no not of on or our she so
that the their them then there these they this those to was we were what when where which while who why will with
you your yes also after before during since about against under over between into than more most some any all each
one two three four five six seven eight nine ten mr mrs ms dr prof st gen col lt sgt sir
le la les un une des du de et est en au aux ce cette ces il elle ils elles nous vous on pour par sur dans avec sans
mais ou donc car ni que qui quoi dont selon apres avant lors pendant depuis contre entre son sa ses leur leurs mon
ma mes notre nos votre vos tout tous toute toutes aucun aucune deux trois m mme mm
der die das den dem des ein eine einen einem einer eines und oder aber doch nicht kein keine ist sind war waren hat
haben wird werden wurde wurden im am zum zur vom beim ins bei mit nach von vor zu auf aus uber unter fur gegen
ohne seit wahrend wie wo wer was wenn als ob dass er sie es wir ihr ihre ihren ihrem ihrer sein seine seinen seinem
seiner dieser diese dieses diesen diesem jener auch noch schon nur sehr
el los las lo una unos unas y o pero sino que quien como cuando donde segun tras desde hasta para por con sin sobre
entre su sus este esta estos estas ese esa al del
il lo gli i una uno e ed ma che chi come quando dove secondo dopo prima per con senza su tra fra suo sua suoi sue
questo questa nel nella dei delle degli alla alle
os as um uma e ou mas que quem como quando onde segundo apos antes para por com sem sobre seu sua seus suas no na
nos nas do da dos das ao aos
w z na do i oraz ale nie jest sa byl przez dla od po przed przy o
bir ve ile de da bu su o icin gibi ama
reuters afp ap dpa ansa efe
""")

_MONTHS: dict[str, int] = {}
for _number, _names in enumerate((
    "january jan janvier janv januar jan enero ene gennaio genn janeiro stycznia styczen ocak ianvaria",
    "february feb fevrier fevr februar feb febrero feb febbraio febb fevereiro lutego luty subat fevralia",
    "march mar mars marz marzo mar marco marca marzec mart marta",
    "april apr avril april abril abr aprile apr abril kwietnia kwiecien nisan aprelia",
    "may mai mai mayo maggio mag maio maja maj mayis maia",
    "june jun juin juni junio giugno giu junho czerwca czerwiec haziran iiunia",
    "july jul juillet juil juli julio luglio lug julho lipca lipiec temmuz iiulia",
    "august aug aout august agosto ago agosto sierpnia sierpien agustos avgusta",
    "september sep sept septembre september septiembre settembre sett setembro wrzesnia wrzesien eylul sentiabria",
    "october oct octobre oktober okt octubre ottobre ott outubro pazdziernika pazdziernik ekim oktiabria",
    "november nov novembre november noviembre novembre novembro listopada listopad kasim noiabria",
    "december dec decembre dezember dez diciembre dic dicembre dezembro grudnia grudzien aralik dekabria",
), start=1):
    for _name in _names.split():
        _MONTHS.setdefault(_name, _number)
_WEEKDAYS = _words("""monday tuesday wednesday thursday friday saturday sunday lundi mardi mercredi jeudi vendredi
samedi dimanche montag dienstag mittwoch donnerstag freitag samstag sonntag lunes martes miercoles jueves viernes
sabado domingo lunedi martedi mercoledi giovedi venerdi sabato domenica""")

GENERIC = frozenset(f"c:{concept}" for concept, (generic, _) in _CONCEPTS.items() if generic)
# How much one shared item of each kind weighs, before its inverse document frequency.
KIND_WEIGHT = {"n": 1.0, "c": 1.0, "d": 1.0, "g": 0.5, "y": 0.4, "#": 0.6}
GENERIC_WEIGHT = 0.25
MAX_ITEMS = 80        # an article's fingerprint is capped (long articles list hundreds of names)
MAX_INDEXED = 64      # items per article written to the lookup index (all that can be evidence, usually)


def _build_concepts() -> tuple[dict[tuple[str, ...], str], dict[tuple[str, ...], str], int]:
    any_case: dict[tuple[str, ...], str] = {}
    upper: dict[tuple[str, ...], str] = {}
    for concept, (_, forms) in _CONCEPTS.items():
        for form in forms.split():
            variants = [form[:-1] + ending for ending in _ENDINGS] if form.endswith("*") else [form]
            for variant in variants:
                if variant.replace(".", "").isupper() and len(variant.replace(".", "")) <= 5:
                    upper[(variant.replace(".", ""),)] = concept
                else:
                    key = tuple(t for t in re.split(r"[-'\s]+", variant.lower()) if t)
                    any_case.setdefault(key, concept)
    longest = max(len(k) for k in any_case)
    return any_case, upper, longest


_ANY_CASE, _UPPER, _LONGEST = _build_concepts()

# ---------------------------------------------------------------------------------------------------
# Text preparation
# ---------------------------------------------------------------------------------------------------
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'", "\u00b4": "'"})
_translit_cache: dict[str, str] = {}


def _translit_char(ch: str) -> str:
    code = ord(ch)
    if code < 0x80:
        return ch
    cached = _translit_cache.get(ch)
    if cached is not None:
        return cached
    if code < 0x250 or 0x370 <= code < 0x530 or 0x1E00 <= code < 0x1F00:  # Latin, Greek, Cyrillic
        out = unidecode(ch)
    elif unicodedata.category(ch).startswith("Z"):
        out = " "
    elif unicodedata.category(ch) in ("Pd",):
        out = "-"
    elif unicodedata.category(ch).startswith("P") or unicodedata.category(ch).startswith("S"):
        out = " . " if ch in "\u3002\uff01\uff1f" else " "
    elif unicodedata.category(ch) == "Nd":
        out = str(unicodedata.digit(ch, 0))
    else:
        out = " "  # scripts without case (CJK, Arabic, Hebrew…): nothing to learn names from
    _translit_cache[ch] = out
    return out


class _TranslitTable(dict):
    """``str.translate`` table filled on first sight of each character (a loop over characters in Python
    cost a fifth of the entity pass)."""

    def __missing__(self, code: int) -> str:
        value = self[code] = _translit_char(chr(code))
        return value


_TRANSLIT = _TranslitTable()


def transliterate(text: str) -> str:
    text = unicodedata.normalize("NFC", text.translate(_APOSTROPHES))
    return text if text.isascii() else text.translate(_TRANSLIT)


# Sentences end at . ! ? : ; or a line break; an opening quote starts a new one too.
_SENTENCE = re.compile(r"(?<=[.!?:;])\s+|\n+|\s*[\"«»<>\u201c\u201d\u201e(\[]+\s*|\s[-\u2013\u2014]\s")
_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?|\d+(?:[.,\u00a0 ]\d{3})+(?![\d])|\d+(?:[.,]\d+)?")
_HYPHEN_SPLIT = re.compile(r"-")
_ACRONYM = re.compile(r"\b(?:[A-Z]\.){2,}")
# Phone and fax numbers are site furniture (a newsroom's switchboard under every article), not evidence:
# an international prefix or a leading zero, then digit groups split by spaces, dashes, dots or slashes.
_PHONE = re.compile(r"(?<![\w.,])(?:\+\d{1,3}|\(?0\d{1,4}\)?)(?:[ ./-]?\(?\d{1,5}\)?){2,6}(?![\w.,]?\d)")
_PHONE_MIN_DIGITS = 7


def _drop_phone_numbers(text: str) -> str:
    return _PHONE.sub(lambda m: " " if sum(ch.isdigit() for ch in m.group()) >= _PHONE_MIN_DIGITS else m.group(), text)
_DATE_MARK = "Qdatemark"
_MONTH_NAMES = "|".join(sorted(_MONTHS, key=len, reverse=True))
_DATE = re.compile(rf"\b(?P<d1>\d{{1,2}})(?:\.|er|st|nd|rd|th)?\s+(?:de\s+)?(?P<m1>(?i:{_MONTH_NAMES}))\b\.?"
                   rf"|\b(?P<m2>(?i:{_MONTH_NAMES}))\b\.?\s+(?P<d2>\d{{1,2}})(?:st|nd|rd|th)?\b(?![.,]?\d)")


@dataclass
class _Token:
    text: str         # as written (transliterated)
    low: str
    initial: bool     # first word of a sentence
    number: bool
    joined: bool      # nothing but a space or a hyphen since the previous word (names continue)


def _tokenize(text: str) -> list[list[_Token]]:
    sentences: list[list[_Token]] = []
    for sentence in _SENTENCE.split(text):
        tokens: list[_Token] = []
        clean = False  # the previous word was followed by nothing but a space or a hyphen
        for chunk in sentence.split():
            for part in _HYPHEN_SPLIT.split(chunk):
                matches = list(_WORD.finditer(part))
                if not matches:
                    clean = False
                for index, match in enumerate(matches):
                    word = match.group()
                    if "'" in word:  # l'Iran, d'al-Tanf, Iran's, O'Brien
                        head, tail = word.split("'", 1)
                        if head.islower() and len(head) <= 2:
                            word = tail
                        elif tail.lower() == "s":
                            word = head
                        else:
                            word = head + tail
                    joined = clean and index == 0 and match.start() == 0
                    tokens.append(_Token(word, word.lower(), not tokens, word[0].isdigit(), joined))
                    clean = match.end() == len(part)
        if tokens:
            sentences.append(tokens)
    return sentences


_DE_ARTICLES = _words("der die das den dem des ein eine einen einem einer eines im am zum zur vom beim ins "
                      "kein keine keinen keinem keiner dieser diese dieses diesen diesem jeder jede jedes jeden "
                      "sein seine seinen seinem seiner ihr ihre ihren ihrem ihrer unser unsere")


def _after_article(tokens: list[_Token], index: int) -> bool:
    """Is the word after ``tokens[index]`` preceded by a German article, possibly with adjectives between?"""
    while index >= 0 and tokens[index].text.islower() and tokens[index].low.endswith(("e", "en", "er", "es", "em")) \
            and tokens[index].low not in _DE_ARTICLES:
        index -= 1
    return index >= 0 and tokens[index].low in _DE_ARTICLES


# ---------------------------------------------------------------------------------------------------
# Name keys
# ---------------------------------------------------------------------------------------------------
_SKELETON_RULES = (("sch", "sh"), ("tch", "ch"), ("ph", "f"), ("th", "t"), ("kh", "h"), ("dh", "d"), ("gh", "g"),
                   ("ck", "k"), ("c", "k"), ("q", "k"), ("z", "s"), ("w", "v"), ("y", "i"), ("j", "i"), ("ou", "u"),
                   ("ee", "i"))
_REPEAT = re.compile(r"(.)\1+")


def skeleton(word: str) -> str:
    """Spelling-insensitive key of a lower-case ASCII name: Pentagone -> pentagon, Selenskyj -> selensk."""
    key = word
    for old, new in _SKELETON_RULES:
        key = key.replace(old, new)
    key = _REPEAT.sub(r"\1", key)
    stripped = key.rstrip("aeiou")
    return stripped if len(stripped) >= 3 else key


def _number_item(word: str) -> str | None:
    if re.fullmatch(r"\d+(?:[.,\u00a0 ]\d{3})+", word):
        digits = re.sub(r"\D", "", word)
    elif re.fullmatch(r"\d+[.,]\d+", word):
        whole, frac = re.split(r"[.,]", word)
        return f"#:{int(whole)}.{frac.rstrip('0') or '0'}" if int(whole) or frac.strip("0") else None
    else:
        digits = word
    value = int(digits)
    if 1900 <= value <= 2100 and len(digits) == 4:
        return f"y:{value}"
    if value < 10:
        return None
    return f"#:{value}"


@dataclass(frozen=True)
class EntityFingerprint:
    items: tuple[str, ...]            # sorted by static priority, most distinctive-looking first
    counts: Mapping[str, int]

    def indexed(self) -> list[str]:
        return indexed(self.items)


def indexed(items: Iterable[str]) -> list[str]:
    """Items written to the lookup index: the first MAX_INDEXED that can be distinctive evidence."""
    return [item for item in items if item not in GENERIC and item[0] in "ncd#"][:MAX_INDEXED]


def extract(title: str, body: str, language: str | None = None) -> EntityFingerprint:
    """The entity fingerprint of an article (title and body).

    German capitalises every noun. When ``language`` is ``de``, a capitalised word that always follows an
    article ("der Angriff", "die proiranischen Milizen") is taken for a common noun: it stays in the
    fingerprint but goes last, after names, dates and numbers, so that it does not crowd the index.
    """
    text = _ACRONYM.sub(lambda m: m.group().replace(".", ""), transliterate(f"{title or ''}\n{body or ''}"))
    text = _drop_phone_numbers(text)
    dates: list[str] = []

    def date(match: re.Match) -> str:
        day, month = (match["d1"], match["m1"]) if match["d1"] else (match["d2"], match["m2"])
        if match["m2"] and not match["m2"][0].isupper():
            return match.group()
        number = _MONTHS.get(month.lower())
        if number is None or not 1 <= int(day) <= 31:
            return match.group()
        dates.append(f"d:{number:02d}-{int(day):02d}")
        return f" {_DATE_MARK} "

    text = _DATE.sub(date, text)
    sentences = _tokenize(text)
    lower_words = {t.low for s in sentences for t in s if not t.number and t.text.islower()}
    capitalised_inside = {t.text for s in sentences for t in s if not t.initial and t.text[:1].isupper()}
    found: Counter[str] = Counter()
    first_pos: dict[str, int] = {}
    names: Counter[str] = Counter()
    leading: Counter[str] = Counter()  # given names and titles in front of a name
    nounish: Counter[str] = Counter()  # German words seen after an article (common nouns)
    position = 0

    def add(item: str) -> None:
        found[item] += 1
        first_pos.setdefault(item, position)

    for tokens in sentences:
        i = 0
        chain: str | None = None  # the name just read, while a run of capitalised names goes on
        while i < len(tokens):
            position += 1
            token = tokens[i]
            if token.text == _DATE_MARK:
                add(dates.pop(0))
                i += 1
                chain = None
                continue
            if token.number:
                chain = None
                item = _number_item(token.text)
                if item:
                    add(item)
                i += 1
                continue
            # table concepts, longest phrase first
            matched = False
            for size in range(min(_LONGEST, len(tokens) - i), 0, -1):
                key = tuple(t.low for t in tokens[i:i + size])
                concept = _ANY_CASE.get(key)
                if concept is None and size == 1 and token.text.isupper():
                    concept = _UPPER.get((token.text,))
                if concept is not None:
                    chain = None
                    add(f"c:{concept}")
                    i += size
                    matched = True
                    break
            if matched:
                continue
            i += 1
            word = token.text
            if token.low in _PARTICLES and chain is not None and token.joined:
                continue  # Bashar al-Assad, Ursula von der Leyen: the name goes on
            chain_before, chain = chain, None
            if not word[:1].isupper() or len(word) < 2 or token.low in _STOP or token.low in _PARTICLES:
                continue
            if token.low in _MONTHS or token.low in _WEEKDAYS:
                continue
            if token.initial and word not in capitalised_inside:
                continue  # "Officials said…": capitalised only because it starts a sentence
            if token.low in lower_words and not (word.isupper() and len(word) <= 5):
                continue  # also written in lower case in this text: a common word
            if chain_before is not None and token.joined:
                # "President Joe Biden", "Colin Kahl": keep the last word of a run of names (the family
                # name, stable across languages); titles and given names would only repeat it.
                names[chain_before] -= 1
                if not names[chain_before]:
                    del names[chain_before]
                leading[chain_before] += 1
            names[token.low] += 1
            if language == "de" and _after_article(tokens, i - 2):  # i is past the current word
                nounish[token.low] += 1
            chain = token.low
            first_pos.setdefault(f"n:{token.low}", position)
    # German genitive and English plural of a name: Bidens -> Biden when Biden occurs too.
    for low in list(names):
        if low.endswith("s") and low[:-1] in names:
            names[low[:-1]] += names.pop(low)
            nounish[low[:-1]] += nounish.pop(low, 0)
    demoted: Counter[str] = Counter()
    for low, count in names.items():
        item = f"n:{skeleton(low)}"
        found[item] += count
        demoted[item] += count - nounish[low]
        first_pos[item] = min(first_pos.get(item, 10**9), first_pos.get(f"n:{low}", 10**9))
    for low, count in leading.items():
        if f"n:{skeleton(low)}" not in found:
            item = f"g:{skeleton(low)}"
            found[item] += count
            first_pos[item] = first_pos.get(f"n:{low}", 10**9)
    # Static priority: names and dates before numbers, frequent before rare, early before late.
    rank = {"c": 0, "n": 0, "d": 0, "#": 1, "g": 2, "y": 2}

    def order(item: str) -> tuple:
        common_noun = item in demoted and demoted[item] <= 0
        return (item in GENERIC, common_noun, rank[item[0]], -found[item], first_pos.get(item, 0), item)

    items = tuple(sorted(found, key=order)[:MAX_ITEMS])
    return EntityFingerprint(items, {item: found[item] for item in items})


# ---------------------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------------------
# Pseudo-documents added to the archive size, so that a young archive does not make every item rare.
PRIOR_DOCUMENTS = 50
# An item found in more than this share of the archive (and in more than TOPICAL_MIN_DF articles) names a
# topic that runs for weeks (a president, a pandemic), not an event: it weighs, but does not count as
# distinctive evidence.
TOPICAL_SHARE = 0.02
TOPICAL_MIN_DF = 10
# The link rule: at least MIN_SHARED distinctive shared items, MIN_SHARED_NAMES of them names, places or
# dates (numbers alone collide too easily), and a weighted cosine of at least LINK_THRESHOLD; or, for
# short texts, two distinctive names and a cosine of at least STRONG_THRESHOLD. Two reports that both give
# days of the month and share none of them describe different events (a date conflict vetoes the link).
MIN_SHARED = 3
MIN_SHARED_NAMES = 2
LINK_THRESHOLD = 0.2
STRONG_THRESHOLD = 0.4


def idf(df: int, total: int) -> float:
    return math.log((total + PRIOR_DOCUMENTS) / (df + 1))


def weight(item: str, df: int, total: int) -> float:
    base = GENERIC_WEIGHT if item in GENERIC else KIND_WEIGHT[item[0]]
    return base * idf(df, total)


def is_distinctive(item: str, df: int, total: int) -> bool:
    return item not in GENERIC and item[0] != "g" and df <= max(TOPICAL_MIN_DF, TOPICAL_SHARE * total)


@dataclass(frozen=True)
class Overlap:
    score: float                 # weighted cosine, 0..1
    shared: tuple[str, ...]      # every shared item
    distinctive: int             # shared items that identify an event (not generic, not topical)
    names: int                   # of which names, places and dates
    date_conflict: bool = False  # both give days of the month, and none in common

    @property
    def linked(self) -> bool:
        if self.names < MIN_SHARED_NAMES or self.date_conflict:
            return False
        return (self.distinctive >= MIN_SHARED and self.score >= LINK_THRESHOLD) or self.score >= STRONG_THRESHOLD


def overlap(mine: Iterable[str], theirs: Iterable[str], df: Mapping[str, int], total: int) -> Overlap:
    """Weighted cosine of two item sets (IDF × kind weights) and the counts the link rule needs."""
    a, b = set(mine), set(theirs)
    weights = {item: weight(item, df.get(item, 0), total) for item in a | b}
    shared = a & b
    norm = math.sqrt(sum(weights[i] ** 2 for i in a) * sum(weights[i] ** 2 for i in b))
    score = sum(weights[i] ** 2 for i in shared) / norm if norm else 0.0
    distinctive = [i for i in shared if is_distinctive(i, df.get(i, 0), total)]
    names = [i for i in distinctive if i[0] in "ncd"]
    dates_a, dates_b = {i for i in a if i[0] == "d"}, {i for i in b if i[0] == "d"}
    conflict = bool(dates_a and dates_b and not dates_a & dates_b)
    return Overlap(score, tuple(sorted(shared)), len(distinctive), len(names), conflict)


def contradicts(mine: Iterable[str], theirs: Iterable[str], df: Mapping[str, int], total: int) -> bool:
    """Both texts name at least MIN_SHARED distinctive people, places or dates and share none: not one
    event, whatever else they share (a recurring headline, a boilerplate banner, the same kind of news)."""
    def telling(items: Iterable[str]) -> set[str]:
        return {i for i in items if i[0] in "ncd" and is_distinctive(i, df.get(i, 0), total)}
    a, b = telling(mine), telling(theirs)
    return len(a) >= MIN_SHARED and len(b) >= MIN_SHARED and not a & b


# The look-alike veto: two reports that share topic and wording but not the event. Either they
# contradict (above), or both give days of the month, none of them in common, and they share fewer than
# LOOKALIKE_MIN_SHARED distinctive items (a strike, then the next one a week later). Chosen on the
# development half of the news-similarity data (bench/dedup_quality.py).
LOOKALIKE_MIN_SHARED = 4
# Both give at least this many figures (not years) and share none: another count, another event (0: off).
LOOKALIKE_MIN_NUMBERS = 0


def lookalike(mine: Iterable[str], theirs: Iterable[str], df: Mapping[str, int], total: int) -> bool:
    mine, theirs = set(mine), set(theirs)
    link = overlap(mine, theirs, df, total)
    if link.date_conflict and link.distinctive < LOOKALIKE_MIN_SHARED:
        return True
    if LOOKALIKE_MIN_NUMBERS:
        numbers_a, numbers_b = {i for i in mine if i[0] == "#"}, {i for i in theirs if i[0] == "#"}
        if min(len(numbers_a), len(numbers_b)) >= LOOKALIKE_MIN_NUMBERS and not numbers_a & numbers_b:
            return True
    return contradicts(mine, theirs, df, total)
