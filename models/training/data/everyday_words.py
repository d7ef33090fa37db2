"""Word lists of the everyday world (:mod:`models.training.data.everyday`).

Plain data: people, places, objects and verbs of a small English grammar, short sentence parts
in six other languages (written in their own script; Chinese also in tone-numbered pinyin,
which is what espeak-ng pronounces), and the parts of on-screen signs.
"""

from __future__ import annotations

from typing import Any

# People: (name, pronoun).
PEOPLE: tuple[tuple[str, str], ...] = (
    ("Anna", "she"), ("Tom", "he"), ("Maria", "she"), ("David", "he"), ("Lucy", "she"),
    ("Peter", "he"), ("Sarah", "she"), ("James", "he"), ("Emma", "she"), ("Omar", "he"),
    ("Nora", "she"), ("Leo", "he"), ("Grace", "she"), ("Sam", "he"), ("Olga", "she"),
    ("Ivan", "he"), ("Sophie", "she"), ("Ben", "he"), ("Laura", "she"), ("Daniel", "he"),
    ("Rosa", "she"), ("Victor", "he"), ("Helen", "she"), ("Mark", "he"),
)  # fmt: skip

CITIES: tuple[str, ...] = (
    "London", "Paris", "Berlin", "Tokyo", "Madrid", "Rome", "Boston", "Chicago", "Cairo",
    "Sydney", "Moscow", "Lisbon", "Dublin", "Toronto", "Denver", "Seattle", "Vienna", "Prague",
    "Oslo", "Athens",
)  # fmt: skip

# Places a thing happens at: (preposition, noun phrase).
PLACES: tuple[tuple[str, str], ...] = (
    ("at", "the market"), ("in", "the park"), ("at", "the station"), ("in", "the kitchen"),
    ("at", "school"), ("at", "the library"), ("on", "the beach"), ("in", "the garden"),
    ("at", "the bakery"), ("at", "the office"), ("near", "the river"), ("at", "the shop"),
    ("in", "the village"), ("at", "the airport"), ("behind", "the house"),
)  # fmt: skip

WEEKDAYS: tuple[str, ...] = (
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
)
# Times of a past event: word sequences (a weekday is added as "on <day>").
TIMES: tuple[str, ...] = (
    "yesterday", "this morning", "last night", "at noon", "in the evening", "last week",
    "at midnight", "after lunch", "before dinner", "in the afternoon",
)  # fmt: skip

# Numbers: (word, digits).
NUMBERS: tuple[tuple[str, str], ...] = (
    ("two", "2"), ("three", "3"), ("four", "4"), ("five", "5"), ("six", "6"), ("seven", "7"),
    ("eight", "8"), ("nine", "9"), ("ten", "10"), ("eleven", "11"), ("twelve", "12"),
    ("fifteen", "15"), ("twenty", "20"), ("thirty", "30"), ("fifty", "50"),
)  # fmt: skip

COLOURS: tuple[str, ...] = ("red", "blue", "green", "yellow", "white", "black", "brown", "orange")
ADJECTIVES: tuple[str, ...] = (
    "small",
    "big",
    "old",
    "new",
    "fresh",
    "heavy",
    "cheap",
    "clean",
    "round",
    "wooden",
)

# Countable objects: (singular, plural, group). Groups decide which verbs fit.
THINGS: tuple[tuple[str, str, str], ...] = (
    ("apple", "apples", "food"), ("orange", "oranges", "food"), ("egg", "eggs", "food"),
    ("tomato", "tomatoes", "food"), ("potato", "potatoes", "food"), ("cake", "cakes", "food"),
    ("banana", "bananas", "food"), ("lemon", "lemons", "food"),
    ("book", "books", "thing"), ("cup", "cups", "thing"), ("chair", "chairs", "thing"),
    ("ticket", "tickets", "thing"), ("letter", "letters", "thing"),
    ("bottle", "bottles", "thing"), ("box", "boxes", "thing"), ("flower", "flowers", "thing"),
    ("key", "keys", "thing"), ("pen", "pens", "thing"), ("bag", "bags", "thing"),
    ("shoe", "shoes", "thing"), ("umbrella", "umbrellas", "thing"),
    ("lamp", "lamps", "thing"), ("plate", "plates", "thing"), ("candle", "candles", "thing"),
    ("map", "maps", "thing"), ("basket", "baskets", "thing"),
)  # fmt: skip
# Mass nouns: (noun, modifiers that fit, group).
MASS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("water", ("cold", "sparkling", "fresh"), "drink"),
    ("milk", ("fresh", "warm", "cold"), "drink"),
    ("coffee", ("black", "hot", "strong"), "drink"),
    ("tea", ("green", "hot", "sweet"), "drink"),
    ("juice", ("orange", "apple", "cold"), "drink"),
    ("bread", ("fresh", "white", "brown"), "food"),
    ("cheese", ("soft", "goat", "old"), "food"),
    ("rice", ("white", "brown"), "food"),
    ("soup", ("hot", "tomato", "onion"), "food"),
)

# Verbs: (past, base, groups of objects they take).
VERBS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("bought", "buy", ("food", "thing", "drink")),
    ("found", "find", ("food", "thing")),
    ("sold", "sell", ("food", "thing", "drink")),
    ("carried", "carry", ("food", "thing", "drink")),
    ("brought", "bring", ("food", "thing", "drink")),
    ("lost", "lose", ("thing",)),
    ("packed", "pack", ("food", "thing")),
    ("ordered", "order", ("food", "thing", "drink")),
    ("dropped", "drop", ("food", "thing")),
    ("ate", "eat", ("food",)),
    ("cooked", "cook", ("food",)),
    ("drank", "drink", ("drink",)),
    ("painted", "paint", ("thing",)),
    ("cleaned", "clean", ("thing",)),
    ("counted", "count", ("food", "thing")),
)

TRAVEL_VERBS: tuple[tuple[str, str], ...] = (
    ("went", "go"),
    ("drove", "drive"),
    ("flew", "fly"),
    ("moved", "move"),
    ("walked", "walk"),
)
# Second clauses: verb phrases in the past (a name may be filled in for "{name}").
THEN_PHRASES: tuple[str, ...] = (
    "went home", "called {name}", "walked to the station", "made dinner", "went to sleep",
    "took a bus to {city}", "wrote a letter to {name}", "sat down in the garden",
)  # fmt: skip

# Commands.
DIRECTIONS: tuple[str, ...] = ("left", "right")
LANDMARKS: tuple[str, ...] = (
    "the corner",
    "the bank",
    "the next light",
    "the church",
    "the bridge",
    "the school",
)
OPENABLE: tuple[str, ...] = ("door", "window", "gate", "box", "fridge")
OPEN_VERBS: tuple[tuple[str, str], ...] = (
    ("close", "closed"),
    ("open", "opened"),
    ("lock", "locked"),
    ("check", "checked"),
)
UNITS_DISTANCE: tuple[str, ...] = ("meters", "steps", "miles")
UNITS_TIME: tuple[str, ...] = ("minutes", "seconds", "hours")

# Literary sentences: "The {subject} {predicate} {preposition} the {adj} {noun}."
LIT_SUBJECTS: tuple[str, ...] = (
    "old house", "quiet river", "tall tree", "little boat", "empty road", "small bird",
    "cold wind", "last train", "grey cat", "old man",
)  # fmt: skip
LIT_PREDICATES: tuple[str, ...] = (
    "stood silent", "moved slowly", "waited", "slept", "shone softly", "drifted",
    "sang quietly", "rested",
)  # fmt: skip
LIT_PREPS: tuple[str, ...] = ("under", "beside", "beyond", "across", "above", "along")
LIT_ADJS: tuple[str, ...] = ("grey", "dark", "distant", "sleeping", "golden", "quiet", "wide")
LIT_NOUNS: tuple[str, ...] = ("sky", "hills", "sea", "town", "bridge", "forest", "field")

# Spoken questions (filled from the lists above).
QUESTION_TEMPLATES: tuple[str, ...] = (
    "Did {name} {verb} the {things}?",
    "Where is {place}?",
    "Can you open the {openable}?",
    "What time does the train to {city} leave?",
    "Is {name} {prep} {place}?",
    "Have you seen my {thing}?",
    "How much is the {thing}?",
)  # fmt: skip

# What Whisper mishears now and then: word -> a plausible wrong word.
CONFUSIONS: dict[str, str] = {
    "bought": "brought", "brought": "bought", "three": "free", "Anna": "Ana", "Sarah": "Sara",
    "Tom": "Tim", "Ben": "Bend", "Leo": "Leah", "Mark": "Mike", "Rosa": "Rose",
    "meters": "metres", "ten": "then", "eight": "ate", "two": "too", "four": "for",
    "sold": "told", "found": "fond", "lost": "last", "walked": "worked", "cold": "gold",
    "tea": "T", "the": "a", "at": "and", "in": "and", "on": "an", "window": "widow",
    "letter": "ladder", "pens": "pins", "bag": "back", "red": "read", "new": "knew",
}  # fmt: skip

# Other languages: subjects, verb -> objects, places and times, each in its script.
# Chinese entries are (characters, pinyin with tone numbers).
FOREIGN: dict[str, dict[str, Any]] = {
    "ru": {
        "subjects": ("Анна", "Иван", "Мама", "Папа", "Ольга", "Мой брат"),
        "verbs": {
            "покупает": ("хлеб", "молоко", "книгу", "яблоко", "газету"),
            "читает": ("книгу", "газету", "письмо"),
            "пьёт": ("воду", "молоко", "кофе", "чай"),
            "ест": ("хлеб", "яблоко", "суп"),
            "видит": ("собаку", "кошку", "дом", "машину"),
        },
        "places": ("в парке", "дома", "в магазине", "на улице"),
        "times": ("сегодня", "утром", "вечером", "сейчас"),
    },
    "de": {
        "subjects": ("Anna", "Peter", "Die Mutter", "Der Vater", "Lukas", "Meine Schwester"),
        "verbs": {
            "kauft": ("das Brot", "die Milch", "ein Buch", "einen Apfel", "die Zeitung"),
            "liest": ("ein Buch", "die Zeitung", "einen Brief"),
            "trinkt": ("Wasser", "Milch", "Kaffee", "Tee"),
            "isst": ("das Brot", "einen Apfel", "die Suppe"),
            "sieht": ("den Hund", "die Katze", "das Haus", "das Auto"),
        },
        "places": ("im Park", "zu Hause", "im Laden", "auf der Straße"),
        "times": ("heute", "am Morgen", "am Abend", "jetzt"),
    },
    "fr": {
        "subjects": ("Marie", "Pierre", "La mère", "Le père", "Julien", "Ma sœur"),
        "verbs": {
            "achète": ("du pain", "du lait", "un livre", "une pomme", "le journal"),
            "lit": ("un livre", "le journal", "une lettre"),
            "boit": ("de l'eau", "du lait", "du café", "du thé"),
            "mange": ("du pain", "une pomme", "la soupe"),
            "voit": ("le chien", "le chat", "la maison", "la voiture"),
        },
        "places": ("au parc", "à la maison", "au magasin", "dans la rue"),
        "times": ("aujourd'hui", "ce matin", "ce soir", "maintenant"),
    },
    "es": {
        "subjects": ("Ana", "Pablo", "La madre", "El padre", "Lucía", "Mi hermano"),
        "verbs": {
            "compra": ("pan", "leche", "un libro", "una manzana", "el periódico"),
            "lee": ("un libro", "el periódico", "una carta"),
            "bebe": ("agua", "leche", "café", "té"),
            "come": ("pan", "una manzana", "la sopa"),
            "ve": ("al perro", "al gato", "la casa", "el coche"),
        },
        "places": ("en el parque", "en casa", "en la tienda", "en la calle"),
        "times": ("hoy", "por la mañana", "por la tarde", "ahora"),
    },
    "it": {
        "subjects": ("Giulia", "Marco", "La madre", "Il padre", "Luca", "Mia sorella"),
        "verbs": {
            "compra": ("il pane", "il latte", "un libro", "una mela", "il giornale"),
            "legge": ("un libro", "il giornale", "una lettera"),
            "beve": ("l'acqua", "il latte", "il caffè", "il tè"),
            "mangia": ("il pane", "una mela", "la zuppa"),
            "vede": ("il cane", "il gatto", "la casa", "la macchina"),
        },
        "places": ("al parco", "a casa", "al negozio", "per strada"),
        "times": ("oggi", "stamattina", "stasera", "adesso"),
    },
    "pt": {
        "subjects": ("Ana", "João", "A mãe", "O pai", "Pedro", "Minha irmã"),
        "verbs": {
            "compra": ("pão", "leite", "um livro", "uma maçã", "o jornal"),
            "lê": ("um livro", "o jornal", "uma carta"),
            "bebe": ("água", "leite", "café", "chá"),
            "come": ("pão", "uma maçã", "a sopa"),
            "vê": ("o cão", "o gato", "a casa", "o carro"),
        },
        "places": ("no parque", "em casa", "na loja", "na rua"),
        "times": ("hoje", "de manhã", "à noite", "agora"),
    },
    "zh": {
        "subjects": (
            ("妈妈", "ma1ma5"), ("爸爸", "ba4ba5"), ("我", "wo3"), ("老师", "lao3shi1"),
            ("我的朋友", "wo3 de5 peng2you5"), ("他", "ta1"),
        ),
        "verbs": {
            ("买", "mai3"): (("书", "shu1"), ("面包", "mian4bao1"), ("苹果", "ping2guo3")),
            ("看", "kan4"): (("书", "shu1"), ("报纸", "bao4zhi3"), ("电视", "dian4shi4")),
            ("喝", "he1"): (("水", "shui3"), ("牛奶", "niu2nai3"), ("茶", "cha2")),
            ("吃", "chi1"): (("面包", "mian4bao1"), ("苹果", "ping2guo3"), ("米饭", "mi3fan4")),
        },
        "places": (
            ("在公园", "zai4 gong1yuan2"), ("在家", "zai4 jia1"), ("在商店", "zai4 shang1dian4"),
        ),
        "times": (
            ("今天", "jin1tian1"), ("早上", "zao3shang5"), ("晚上", "wan3shang5"),
            ("现在", "xian4zai4"),
        ),
    },
}  # fmt: skip

# Signs.
WARNINGS: tuple[str, ...] = (
    "BEWARE OF THE DOG", "KEEP OUT", "NO PARKING", "WET FLOOR", "STAFF ONLY", "NO ENTRY",
    "MIND THE GAP", "DO NOT TOUCH", "SLOW DOWN", "PRIVATE ROAD", "EXIT", "OPEN 24 HOURS",
    "SALE", "PUSH", "PULL", "QUIET PLEASE",
)  # fmt: skip
SIGN_ADJS: tuple[str, ...] = (
    "SUNRISE",
    "GOLDEN",
    "SUNNY",
    "SILVER",
    "GREEN",
    "OLD TOWN",
    "HAPPY",
    "BLUE SKY",
    "LUCKY",
)
SIGN_PLACES: tuple[str, ...] = (
    "BAKERY",
    "CAFE",
    "MARKET",
    "GARDEN",
    "DINER",
    "MOTEL",
    "PHARMACY",
    "HOTEL",
    "BOOKS",
)
SIGN_FOODS: tuple[str, ...] = ("PIZZA", "TACO", "PASTA", "BURGER", "SOUP", "PANCAKE", "SUSHI")
SIGN_NAMES: tuple[str, ...] = ("JOHNSON", "MILLER", "ROSE", "CARTER", "WILLOW", "EAGLE")
SIGN_ITEMS: tuple[str, ...] = ("APPLES", "COFFEE", "TICKETS", "BREAD", "FLOWERS", "LEMONADE")
MONTHS: tuple[str, ...] = (
    "JANUARY", "FEBRUARY", "MARCH", "APRIL", "MAY", "JUNE", "JULY", "AUGUST", "SEPTEMBER",
    "OCTOBER", "NOVEMBER", "DECEMBER",
)  # fmt: skip
STREETS: tuple[str, ...] = ("ELM", "OAK", "MAPLE", "MAIN", "PARK", "HILL", "RIVER", "CHURCH")

# What an OCR engine confuses: character -> a look-alike.
LOOKALIKES: dict[str, str] = {
    "O": "0", "0": "O", "I": "1", "1": "I", "S": "5", "5": "S", "E": "F", "B": "8", "8": "B",
    "l": "I", "o": "0", "e": "c", "a": "o", "n": "h", "G": "C", "Z": "2", "U": "V",
}  # fmt: skip
