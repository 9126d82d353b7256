#!/usr/bin/env python3
"""Generate the small synthetic English-German demo corpus that ships in ``data/``.

Why this exists: the project needs a parallel corpus that is small enough to commit, free of any
third-party licence, and available offline, so that the README demo, the smoke tests and CI can
train and evaluate a (tiny) Transformer end to end without downloading WMT.  Every sentence pair is
produced by the template grammar below; nothing is copied from an existing corpus.

The grammar is deliberately compositional: about 240 nouns (with gender, plural and case
forms), about a hundred verb entries (present, perfect, modal and ``werden`` future, separable
verbs), adjectives with strong/weak/mixed endings, numbers, time and place adverbials, questions,
imperatives, negation and clause coordination.  Test sentences are therefore mostly new
combinations of known parts, which a small model has to generalise to.

The output is deterministic: the same ``--seed`` always gives byte-identical files.

    python scripts/make_demo_corpus.py --out data
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

# ---------------------------------------------------------------------------------------------
# German morphology tables
# ---------------------------------------------------------------------------------------------

# Keys: case -> gender key ("m", "f", "n", or "p" for plural).
DEF_ART = {
    "nom": {"m": "der", "f": "die", "n": "das", "p": "die"},
    "acc": {"m": "den", "f": "die", "n": "das", "p": "die"},
    "dat": {"m": "dem", "f": "der", "n": "dem", "p": "den"},
}
DIESER = {
    "nom": {"m": "dieser", "f": "diese", "n": "dieses", "p": "diese"},
    "acc": {"m": "diesen", "f": "diese", "n": "dieses", "p": "diese"},
    "dat": {"m": "diesem", "f": "dieser", "n": "diesem", "p": "diesen"},
}
# Endings of ein / kein / mein ... (the "ein-words").
EIN_END = {
    "nom": {"m": "", "f": "e", "n": "", "p": "e"},
    "acc": {"m": "en", "f": "e", "n": "", "p": "e"},
    "dat": {"m": "em", "f": "er", "n": "em", "p": "en"},
}
# Adjective endings after der-words (weak), ein-words (mixed) and without article (strong).
WEAK = {
    "nom": {"m": "e", "f": "e", "n": "e", "p": "en"},
    "acc": {"m": "en", "f": "e", "n": "e", "p": "en"},
    "dat": {"m": "en", "f": "en", "n": "en", "p": "en"},
}
MIXED = {
    "nom": {"m": "er", "f": "e", "n": "es", "p": "en"},
    "acc": {"m": "en", "f": "e", "n": "es", "p": "en"},
    "dat": {"m": "en", "f": "en", "n": "en", "p": "en"},
}
STRONG = {
    "nom": {"m": "er", "f": "e", "n": "es", "p": "e"},
    "acc": {"m": "en", "f": "e", "n": "es", "p": "e"},
    "dat": {"m": "em", "f": "er", "n": "em", "p": "en"},
}
CONTRACTIONS = {
    ("in", "dem"): "im",
    ("in", "das"): "ins",
    ("an", "dem"): "am",
    ("an", "das"): "ans",
    ("zu", "dem"): "zum",
    ("zu", "der"): "zur",
}

NUM_DE = ["", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun", "zehn",
          "elf", "zwölf"]
NUM_EN = ["", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
          "eleven", "twelve"]

# Person index: 0 ich, 1 du, 2 er/sie/es, 3 wir, 4 ihr, 5 sie (plural).
SEIN = ("bin", "bist", "ist", "sind", "seid", "sind")
WAR = ("war", "warst", "war", "waren", "wart", "waren")
HABEN = ("habe", "hast", "hat", "haben", "habt", "haben")
HATTE = ("hatte", "hattest", "hatte", "hatten", "hattet", "hatten")
WERDEN = ("werde", "wirst", "wird", "werden", "werdet", "werden")
MODALS = {
    "koennen": ("kann", "kannst", "kann", "können", "könnt", "können"),
    "wollen": ("will", "willst", "will", "wollen", "wollt", "wollen"),
    "muessen": ("muss", "musst", "muss", "müssen", "müsst", "müssen"),
    "moechten": ("möchte", "möchtest", "möchte", "möchten", "möchtet", "möchten"),
}
BE_EN = ("am", "are", "is", "are", "are", "are")
WAS_EN = ("was", "were", "was", "were", "were", "were")

# (German, English, person index, German owner stem, English owner word, gender for agreement)
PRONOUNS = [
    ("ich", "I", 0, "mein", "my"),
    ("du", "you", 1, "dein", "your"),
    ("er", "he", 2, "sein", "his"),
    ("sie", "she", 2, "ihr", "her"),
    ("wir", "we", 3, "unser", "our"),
    ("ihr", "you all", 4, "euer", "your"),
    ("sie", "they", 5, "ihr", "their"),
]
POSSESSIVES = [("mein", "my"), ("dein", "your"), ("sein", "his"), ("ihr", "her"),
               ("unser", "our"), ("ihr", "their")]

NAMES = [("Anna", "f"), ("Maria", "f"), ("Lisa", "f"), ("Julia", "f"), ("Sophie", "f"),
         ("Emma", "f"), ("Lena", "f"), ("Tom", "m"), ("Paul", "m"), ("Max", "m"),
         ("Peter", "m"), ("Ben", "m"), ("Felix", "m"), ("Jonas", "m"), ("Lukas", "m")]
CITIES = [("Berlin", "Berlin"), ("Wien", "Vienna"), ("München", "Munich"),
          ("Hamburg", "Hamburg"), ("Köln", "Cologne"), ("Paris", "Paris"),
          ("London", "London"), ("Rom", "Rome"), ("Zürich", "Zurich"), ("Italien", "Italy"),
          ("Spanien", "Spain"), ("Frankreich", "France"), ("Österreich", "Austria"),
          ("England", "England"), ("Griechenland", "Greece"), ("Polen", "Poland")]
LANGUAGES = [("Deutsch", "German"), ("Englisch", "English"), ("Französisch", "French"),
             ("Spanisch", "Spanish"), ("Italienisch", "Italian"), ("Polnisch", "Polish")]
GAMES = [("Klavier", "the piano"), ("Gitarre", "the guitar"), ("Geige", "the violin"),
         ("Flöte", "the flute"), ("Trompete", "the trumpet"), ("Fußball", "football"),
         ("Tennis", "tennis"), ("Basketball", "basketball"), ("Schach", "chess"),
         ("Karten", "cards"), ("Verstecken", "hide and seek")]

# ---------------------------------------------------------------------------------------------
# Lexicon: nouns
# ---------------------------------------------------------------------------------------------

# gender | singular | plural | English singular | English plural | tags | extra
# "-" marks a missing form (mass nouns have no plural, plural-only nouns no singular).
# extra: "weak=FORM" gives the n-declension form used in accusative/dative singular.
NOUN_TABLE = """
m | Mann | Männer | man | men | person adult male nopos gen
f | Frau | Frauen | woman | women | person adult female nopos gen
m | Junge | Jungen | boy | boys | person child male gen | weak=Jungen
n | Mädchen | Mädchen | girl | girls | person child female gen
n | Kind | Kinder | child | children | person child
n | Baby | Babys | baby | babies | baby
m | Lehrer | Lehrer | teacher | teachers | person adult male
m | Arzt | Ärzte | doctor | doctors | person adult male
m | Koch | Köche | cook | cooks | person adult male
m | Bauer | Bauern | farmer | farmers | person adult male | weak=Bauern
m | Polizist | Polizisten | policeman | policemen | person adult male | weak=Polizisten
f | Polizistin | Polizistinnen | policewoman | policewomen | person adult female
m | Kellner | Kellner | waiter | waiters | person adult male
f | Kellnerin | Kellnerinnen | waitress | waitresses | person adult female
m | Student | Studenten | student | students | person adult male | weak=Studenten
m | Fahrer | Fahrer | driver | drivers | person adult male
m | Pilot | Piloten | pilot | pilots | person adult male | weak=Piloten
m | Künstler | Künstler | artist | artists | person adult male
m | Verkäufer | Verkäufer | salesman | salesmen | person adult male
f | Verkäuferin | Verkäuferinnen | saleswoman | saleswomen | person adult female
m | Tourist | Touristen | tourist | tourists | person adult male | weak=Touristen
m | Gast | Gäste | guest | guests | person adult male
m | Nachbar | Nachbarn | neighbour | neighbours | person adult male gen | weak=Nachbarn
m | Freund | Freunde | friend | friends | person male fam gen
f | Mutter | Mütter | mother | mothers | person adult female fam
m | Vater | Väter | father | fathers | person adult male fam
m | Bruder | Brüder | brother | brothers | person male fam
f | Schwester | Schwestern | sister | sisters | person female fam
m | Sohn | Söhne | son | sons | person male fam
f | Tochter | Töchter | daughter | daughters | person female fam
m | Onkel | Onkel | uncle | uncles | person adult male fam
f | Tante | Tanten | aunt | aunts | person adult female fam
f | Oma | Omas | grandma | grandmas | person adult female fam
m | Opa | Opas | grandpa | grandpas | person adult male fam
p | - | Eltern | - | parents | person adult fam
p | - | Leute | - | people | person adult nopos
m | König | Könige | king | kings | person adult male
f | Königin | Königinnen | queen | queens | person adult female
m | Prinz | Prinzen | prince | princes | person male | weak=Prinzen
f | Prinzessin | Prinzessinnen | princess | princesses | person female
m | Soldat | Soldaten | soldier | soldiers | person adult male | weak=Soldaten
m | Kunde | Kunden | customer | customers | person adult male | weak=Kunden
m | Chef | Chefs | boss | bosses | person adult male
m | Schüler | Schüler | pupil | pupils | person child male
m | Hund | Hunde | dog | dogs | animal pet dog swim
f | Katze | Katzen | cat | cats | animal pet cat climb
n | Pferd | Pferde | horse | horses | animal farm big
f | Kuh | Kühe | cow | cows | animal farm big
m | Vogel | Vögel | bird | birds | animal pet bird small
m | Fisch | Fische | fish | fish | pet fish swim catch
f | Maus | Mäuse | mouse | mice | animal small catch
n | Schwein | Schweine | pig | pigs | animal farm
n | Schaf | Schafe | sheep | sheep | animal farm
f | Ente | Enten | duck | ducks | animal farm bird swim
n | Huhn | Hühner | chicken | chickens | animal farm bird
f | Ziege | Ziegen | goat | goats | animal farm climb
m | Esel | Esel | donkey | donkeys | animal farm
m | Affe | Affen | monkey | monkeys | animal wild climb | weak=Affen
m | Löwe | Löwen | lion | lions | animal wild big | weak=Löwen
m | Bär | Bären | bear | bears | animal wild big climb | weak=Bären
m | Elefant | Elefanten | elephant | elephants | animal wild big | weak=Elefanten
m | Tiger | Tiger | tiger | tigers | animal wild big
m | Fuchs | Füchse | fox | foxes | animal wild
m | Wolf | Wölfe | wolf | wolves | animal wild
f | Giraffe | Giraffen | giraffe | giraffes | animal wild big
f | Eule | Eulen | owl | owls | animal wild bird
f | Schlange | Schlangen | snake | snakes | animal wild
m | Frosch | Frösche | frog | frogs | animal small catch swim
n | Kaninchen | Kaninchen | rabbit | rabbits | animal pet small
m | Hase | Hasen | hare | hares | animal wild | weak=Hasen
n | Pony | Ponys | pony | ponies | animal farm
m | Schmetterling | Schmetterlinge | butterfly | butterflies | insect catch
f | Biene | Bienen | bee | bees | insect
m | Apfel | Äpfel | apple | apples | food fruit afood
f | Banane | Bananen | banana | bananas | food fruit afood
f | Orange | Orangen | orange | oranges | food fruit
f | Birne | Birnen | pear | pears | food fruit
f | Erdbeere | Erdbeeren | strawberry | strawberries | food fruit
f | Zitrone | Zitronen | lemon | lemons | fruit
f | Tomate | Tomaten | tomato | tomatoes | food veg cut
f | Kartoffel | Kartoffeln | potato | potatoes | food veg cook
f | Karotte | Karotten | carrot | carrots | food veg afood
m | Kuchen | Kuchen | cake | cakes | food bake cut
m | Keks | Kekse | biscuit | biscuits | food bake
n | Ei | Eier | egg | eggs | food cook
f | Wurst | Würste | sausage | sausages | food cook afood cut
f | Pizza | Pizzas | pizza | pizzas | food bake
n | Brötchen | Brötchen | bread roll | bread rolls | food bake
m | Salat | Salate | salad | salads | food
f | Suppe | Suppen | soup | soups | food cook hot
m | Knochen | Knochen | bone | bones | afood
n | Brot | - | bread | - | food bake cut afood mass
m | Käse | - | cheese | - | food cut afood mass
n | Fleisch | - | meat | - | food cook cut afood mass
m | Reis | - | rice | - | food cook mass
f | Schokolade | - | chocolate | - | food mass
m | Honig | - | honey | - | food afood mass
n | Gras | - | grass | - | afood mass
n | Heu | - | hay | - | afood mass
f | Milch | - | milk | - | drink adrink hot mass
n | Wasser | - | water | - | drink adrink mass
m | Kaffee | - | coffee | - | drink hot mass
m | Tee | - | tea | - | drink hot mass
m | Saft | - | juice | - | drink mass
n | Bier | - | beer | - | drink mass
m | Wein | - | wine | - | drink mass
f | Limonade | - | lemonade | - | drink mass
f | Musik | - | music | - | music mass
n | Buch | Bücher | book | books | thing read write
f | Zeitung | Zeitungen | newspaper | newspapers | thing read
m | Brief | Briefe | letter | letters | thing read write send open
f | Postkarte | Postkarten | postcard | postcards | thing read write send
f | Geschichte | Geschichten | story | stories | story read write tell
n | Lied | Lieder | song | songs | song write
m | Witz | Witze | joke | jokes | tell
m | Stift | Stifte | pen | pens | thing small
m | Bleistift | Bleistifte | pencil | pencils | thing small
f | Tasche | Taschen | bag | bags | thing container carry open shut
m | Schlüssel | Schlüssel | key | keys | thing small
m | Ball | Bälle | ball | balls | thing toy throw catch
m | Hut | Hüte | hat | hats | clothing
m | Mantel | Mäntel | coat | coats | clothing warm hang
m | Schuh | Schuhe | shoe | shoes | clothing
f | Uhr | Uhren | watch | watches | thing small fix
n | Handy | Handys | phone | phones | thing small fix
f | Blume | Blumen | flower | flowers | plant flower gift paint
f | Tasse | Tassen | cup | cups | thing dish
n | Glas | Gläser | glass | glasses | thing dish
m | Teller | Teller | plate | plates | thing dish
f | Flasche | Flaschen | bottle | bottles | thing dish open shut
f | Lampe | Lampen | lamp | lamps | thing fix switch hang
m | Stuhl | Stühle | chair | chairs | furniture carry fix
m | Tisch | Tische | table | tables | furniture clean
n | Bild | Bilder | picture | pictures | thing paint hang
f | Karte | Karten | map | maps | thing read
n | Geschenk | Geschenke | present | presents | thing send open gift
n | Kleid | Kleider | dress | dresses | clothing
m | Regenschirm | Regenschirme | umbrella | umbrellas | thing
m | Computer | Computer | computer | computers | thing fix switch
n | Fahrrad | Fahrräder | bicycle | bicycles | vehicle bike fix car
f | Puppe | Puppen | doll | dolls | thing toy
m | Koffer | Koffer | suitcase | suitcases | thing container carry open shut
m | Spiegel | Spiegel | mirror | mirrors | thing hang
f | Kerze | Kerzen | candle | candles | thing
m | Löffel | Löffel | spoon | spoons | thing dish small
n | Messer | Messer | knife | knives | thing dish small
f | Gabel | Gabeln | fork | forks | thing dish small
n | Heft | Hefte | notebook | notebooks | thing
f | Kamera | Kameras | camera | cameras | thing fix
m | Rucksack | Rucksäcke | backpack | backpacks | thing container carry open shut
m | Schal | Schals | scarf | scarves | clothing warm
n | Hemd | Hemden | shirt | shirts | clothing
f | Jacke | Jacken | jacket | jackets | clothing warm
f | Kiste | Kisten | box | boxes | thing container carry open shut
m | Korb | Körbe | basket | baskets | thing container carry
n | Radio | Radios | radio | radios | thing switch fix
m | Fernseher | Fernseher | TV | TVs | thing switch fix
n | Licht | Lichter | light | lights | switch
m | Stein | Steine | stone | stones | throw
m | Stock | Stöcke | stick | sticks | throw
n | Paket | Pakete | parcel | parcels | send carry open
n | Foto | Fotos | photo | photos | thing photo send hang
m | Ring | Ringe | ring | rings | thing small gift
f | Kette | Ketten | necklace | necklaces | thing small gift
n | Spielzeug | Spielzeuge | toy | toys | thing toy
p | - | Hausaufgaben | - | homework | hw
m | Turm | Türme | tower | towers | build
f | Sandburg | Sandburgen | sandcastle | sandcastles | build
m | Schneemann | Schneemänner | snowman | snowmen | build
m | Kühlschrank | Kühlschränke | fridge | fridges | furniture
n | Auto | Autos | car | cars | vehicle fix clean car
m | Bus | Busse | bus | buses | vehicle public
m | Zug | Züge | train | trains | vehicle public
n | Boot | Boote | boat | boats | vehicle build
n | Schiff | Schiffe | ship | ships | vehicle
n | Flugzeug | Flugzeuge | plane | planes | vehicle
n | Taxi | Taxis | taxi | taxis | vehicle public
m | Lastwagen | Lastwagen | lorry | lorries | vehicle
n | Motorrad | Motorräder | motorbike | motorbikes | vehicle fix car
f | Straßenbahn | Straßenbahnen | tram | trams | vehicle public
n | Haus | Häuser | house | houses | building build paint visit own
f | Wohnung | Wohnungen | flat | flats | room clean
m | Garten | Gärten | garden | gardens | place own
f | Küche | Küchen | kitchen | kitchens | room clean
m | Park | Parks | park | parks | place
f | Schule | Schulen | school | schools | building
m | Wald | Wälder | forest | forests | place
f | Stadt | Städte | city | cities | place visit
n | Zimmer | Zimmer | room | rooms | room clean
n | Büro | Büros | office | offices | room clean
n | Kino | Kinos | cinema | cinemas | building
n | Restaurant | Restaurants | restaurant | restaurants | building
m | Supermarkt | Supermärkte | supermarket | supermarkets | building
f | Bibliothek | Bibliotheken | library | libraries | building
n | Krankenhaus | Krankenhäuser | hospital | hospitals | building
n | Wohnzimmer | Wohnzimmer | living room | living rooms | room clean
n | Badezimmer | Badezimmer | bathroom | bathrooms | room clean
m | Zoo | Zoos | zoo | zoos | place visit
f | Bäckerei | Bäckereien | bakery | bakeries | building
n | Café | Cafés | café | cafés | building
n | Museum | Museen | museum | museums | building visit
n | Hotel | Hotels | hotel | hotels | building
f | Kirche | Kirchen | church | churches | building visit paint
m | Bahnhof | Bahnhöfe | station | stations | building
f | Haltestelle | Haltestellen | bus stop | bus stops | place
m | Strand | Strände | beach | beaches | place
m | Fluss | Flüsse | river | rivers | place
m | See | Seen | lake | lakes | place
n | Meer | Meere | sea | seas | place
m | Berg | Berge | mountain | mountains | place
f | Wiese | Wiesen | meadow | meadows | place
m | Bauernhof | Bauernhöfe | farm | farms | place visit
m | Spielplatz | Spielplätze | playground | playgrounds | place
m | Balkon | Balkone | balcony | balconies | place
n | Feld | Felder | field | fields | place
f | Brücke | Brücken | bridge | bridges | place build
f | Insel | Inseln | island | islands | place
f | Straße | Straßen | street | streets | place
m | Markt | Märkte | market | markets | place
n | Dach | Dächer | roof | roofs | place fix
n | Sofa | Sofas | sofa | sofas | furniture
n | Bett | Betten | bed | beds | furniture
m | Boden | Böden | floor | floors | place clean
m | Baum | Bäume | tree | trees | plant paint
n | Fenster | Fenster | window | windows | open shut clean
f | Tür | Türen | door | doors | open shut
f | Wand | Wände | wall | walls | wall
f | Party | Partys | party | parties | event
m | Keller | Keller | cellar | cellars | room clean
m | Platz | Plätze | square | squares | place
n | Schwimmbad | Schwimmbäder | swimming pool | swimming pools | building
n | Dorf | Dörfer | village | villages | place visit
m | Flughafen | Flughäfen | airport | airports | building
n | Theater | Theater | theatre | theatres | building visit
n | Geschäft | Geschäfte | shop | shops | building
f | Apotheke | Apotheken | pharmacy | pharmacies | building
f | Bank | Banken | bank | banks | building
f | Sonne | - | sun | - | sky mass
m | Schatten | - | shade | - | sky mass
"""

# Where a noun can be a location (dative) -- kind:preposition:English preposition.
# Kinds: room (indoors), out (outdoors), water, surf (on furniture), pos (next to/under...),
# vehicle, box (inside a container), home (where one lives), shop, arrive, wall, table (at the
# table), tree (in the tree), nature (hiking), sky (in the sun / shade).
LOC_TABLE = """
Haus = room:in:in pos:neben:next_to pos:hinter:behind pos:vor:in_front_of home:in:in
Wohnung = room:in:in home:in:in
Garten = out:in:in
Küche = room:in:in
Park = out:in:in nature:in:in
Schule = room:in:in pos:vor:in_front_of pos:hinter:behind arrive:in:at
Wald = out:in:in nature:in:in
Stadt = out:in:in home:in:in
Zimmer = room:in:in
Büro = room:in:in arrive:in:at
Kino = room:in:at pos:vor:in_front_of
Restaurant = room:in:in
Supermarkt = room:in:in shop:in:at
Bibliothek = room:in:in
Krankenhaus = room:in:in
Wohnzimmer = room:in:in
Badezimmer = room:in:in
Zoo = out:in:at
Bäckerei = room:in:in shop:in:at
Café = room:in:in
Museum = room:in:in
Hotel = room:in:in arrive:in:at
Kirche = room:in:in pos:vor:in_front_of pos:neben:next_to
Bahnhof = out:an:at pos:vor:in_front_of arrive:an:at
Haltestelle = out:an:at
Strand = out:an:on nature:an:on
Fluss = out:an:by water:in:in
See = out:an:by water:in:in nature:an:by
Meer = out:an:by water:in:in
Berg = out:auf:on nature:auf:on
Wiese = out:auf:in nature:auf:in
Bauernhof = out:auf:on
Spielplatz = out:auf:at
Balkon = surf:auf:on
Feld = out:auf:in
Brücke = out:auf:on pos:unter:under
Insel = out:auf:on nature:auf:on
Straße = out:auf:on
Markt = out:auf:at shop:auf:at
Dach = surf:auf:on
Sofa = surf:auf:on pos:hinter:behind pos:neben:next_to
Bett = surf:in:in surf:auf:on pos:unter:under pos:neben:next_to
Boden = surf:auf:on
Baum = out:unter:under pos:hinter:behind pos:neben:next_to tree:auf:in
Fenster = pos:an:at pos:neben:next_to
Tür = pos:an:at pos:vor:in_front_of pos:hinter:behind
Wand = wall:an:on
Party = room:auf:at
Keller = room:in:in
Platz = out:auf:in
Schwimmbad = water:in:in
Dorf = out:in:in home:in:in
Flughafen = out:an:at arrive:an:at
Theater = room:in:at
Geschäft = room:in:in shop:in:in
Apotheke = room:in:at
Bank = room:in:at
Sonne = sky:in:in
Schatten = sky:in:in
Tisch = surf:auf:on pos:unter:under pos:neben:next_to table:an:at
Stuhl = surf:auf:on pos:unter:under pos:neben:next_to
Auto = vehicle:in:in pos:neben:next_to pos:hinter:behind pos:vor:in_front_of
Bus = vehicle:in:on
Zug = vehicle:in:on
Flugzeug = vehicle:in:on
Taxi = vehicle:in:in
Boot = vehicle:in:in
Schiff = vehicle:auf:on
Straßenbahn = vehicle:in:on
Tasche = box:in:in
Koffer = box:in:in
Kiste = box:in:in
Korb = box:in:in
Rucksack = box:in:in
Kühlschrank = box:in:in
Wasser = water:in:in
"""

# Where a noun can be a destination -- motion classes:preposition:English preposition.
# Motion classes: g go/run/come, d drive, f fly, j jump, c climb, s swim.
DIR_TABLE = """
Haus = g:in:into
Wohnung = g:in:into
Garten = g:in:into
Küche = g:in:into
Park = gd:in:to
Schule = gd:in:to
Wald = gd:in:into
Stadt = gd:in:to
Zimmer = g:in:into
Büro = gd:in:to
Kino = gd:in:to
Restaurant = gd:in:to
Supermarkt = gd:in:to
Bibliothek = gd:in:to
Krankenhaus = gd:in:to
Wohnzimmer = g:in:into
Badezimmer = g:in:into
Zoo = gd:in:to
Bäckerei = gd:in:to
Café = gd:in:to
Museum = gd:in:to
Hotel = gd:in:to
Kirche = gd:in:to
Bahnhof = gd:zu:to
Haltestelle = g:zu:to
Strand = gd:an:to
Fluss = gd:an:to js:in:into
See = gd:an:to js:in:into
Meer = gd:an:to js:in:into
Berg = gc:auf:up
Bauernhof = gd:auf:to
Spielplatz = g:auf:to
Balkon = g:auf:onto
Insel = f:auf:to s:zu:to
Markt = gd:auf:to
Dach = c:auf:onto
Sofa = j:auf:onto
Bett = g:in:to j:auf:onto
Tisch = j:auf:onto
Stuhl = jc:auf:onto
Baum = c:auf:up
Fenster = g:zu:to
Tür = g:zu:to
Party = gd:auf:to
Schwimmbad = gd:in:to
Dorf = gd:in:to
Flughafen = gd:zu:to
Theater = gd:in:to
Geschäft = g:in:to
Apotheke = g:zu:to
Bank = g:zu:to
Wasser = js:in:into
Arzt = gd:zu:to
"""

# Places that can sensibly take a possessive ("in seinem Zimmer", "auf ihrem Sofa").
POSS_PLACE_TAGS = frozenset({"room", "furniture", "vehicle", "container", "own", "fam"})

# English renderings without article for "in der Schule" etc. (definite, singular, no adjective).
BARE_EN = {
    ("Schule", "in", "loc"): "at school",
    ("Schule", "in", "dir"): "to school",
    ("Bett", "in", "loc"): "in bed",
    ("Bett", "in", "dir"): "to bed",
}


@dataclass(frozen=True)
class Noun:
    gender: str  # m, f, n, or p (plural only)
    sg: str | None
    pl: str | None
    en_sg: str | None
    en_pl: str | None
    tags: frozenset[str]
    weak: str | None = None
    locs: tuple[tuple[str, str, str], ...] = ()
    dirs: tuple[tuple[str, str, str], ...] = ()

    @property
    def mass(self) -> bool:
        return "mass" in self.tags

    @property
    def plural_only(self) -> bool:
        return self.sg is None

    def de_form(self, case: str, plural: bool) -> str:
        if plural:
            assert self.pl is not None
            form = self.pl
            if case == "dat" and not form.endswith(("n", "s")):
                form += "n"
            return form
        assert self.sg is not None
        if self.weak and case != "nom":
            return self.weak
        return self.sg

    def en_form(self, plural: bool) -> str:
        form = self.en_pl if plural else self.en_sg
        assert form is not None
        return form

    @property
    def en_pron(self) -> str:
        if "male" in self.tags:
            return "he"
        if "female" in self.tags:
            return "she"
        return "it"


def _parse_places(text: str) -> dict[str, tuple[tuple[str, str, str], ...]]:
    out: dict[str, tuple[tuple[str, str, str], ...]] = {}
    for line in text.strip().splitlines():
        key, _, rest = line.partition("=")
        entries = []
        for item in rest.split():
            kind, prep, en = item.split(":")
            entries.append((kind, prep, en.replace("_", " ")))
        out[key.strip()] = tuple(entries)
    return out


def _parse_nouns() -> list[Noun]:
    locs = _parse_places(LOC_TABLE)
    dirs = _parse_places(DIR_TABLE)
    nouns = []
    for line in NOUN_TABLE.strip().splitlines():
        cols = [c.strip() for c in line.split("|")]
        gender, sg, pl, en_sg, en_pl, tags = cols[:6]
        extra = cols[6] if len(cols) > 6 else ""
        weak = extra.split("=", 1)[1] if extra.startswith("weak=") else None
        key = sg if sg != "-" else pl
        nouns.append(Noun(
            gender=gender,
            sg=None if sg == "-" else sg,
            pl=None if pl == "-" else pl,
            en_sg=None if en_sg == "-" else en_sg,
            en_pl=None if en_pl == "-" else en_pl,
            tags=frozenset(tags.split()),
            weak=weak,
            locs=locs.get(key, ()),
            dirs=dirs.get(key, ()),
        ))
    return nouns


NOUNS = _parse_nouns()
NOUN_BY_DE = {(n.sg or n.pl): n for n in NOUNS}

# ---------------------------------------------------------------------------------------------
# Lexicon: adjectives
# ---------------------------------------------------------------------------------------------

# predicative | attributive stem | English | category | noun tags it fits | English overrides
# (@solid abbreviates the tags of concrete objects.)
ADJ_TABLE = """
groß | groß | big | size | person animal @solid room place | person=tall
klein | klein | small | size | person animal baby @solid room place insect
alt | alt | old | age | person animal thing clothing vehicle building furniture plant
neu | neu | new | age | thing clothing vehicle building furniture
jung | jung | young | age | person animal
schön | schön | beautiful | qual | person place building room plant clothing
hässlich | hässlich | ugly | qual | animal building clothing vehicle
teuer | teur | expensive | qual | thing clothing vehicle
billig | billig | cheap | qual | thing clothing vehicle
schnell | schnell | fast | qual | vehicle animal
langsam | langsam | slow | qual | vehicle animal
schwer | schwer | heavy | qual | container furniture
dunkel | dunkl | dark | qual | room
hell | hell | bright | qual | room
ruhig | ruhig | quiet | qual | place room
laut | laut | loud | qual | person animal
leer | leer | empty | state | container dish room
voll | voll | full | state | container dish
sauber | sauber | clean | state | clothing dish room vehicle
schmutzig | schmutzig | dirty | state | clothing dish room vehicle
warm | warm | warm | temp | drink warm room hot
kalt | kalt | cold | temp | drink room hot
heiß | heiß | hot | temp | hot
frisch | frisch | fresh | qual | food
süß | süß | sweet | taste | fruit bake animal baby | animal=cute baby=cute
sauer | saur | sour | taste | fruit
lecker | lecker | delicious | taste | food
interessant | interessant | interesting | qual | read story
lang | lang | long | qual | story
kurz | kurz | short | qual | story song
müde | müde | tired | mood | person animal baby
hungrig | hungrig | hungry | mood | person animal baby
durstig | durstig | thirsty | mood | person animal
glücklich | glücklich | happy | mood | person
traurig | traurig | sad | mood | person
krank | krank | sick | mood | person animal baby
freundlich | freundlich | friendly | char | person animal
nett | nett | nice | char | person
klug | klug | clever | char | person animal
faul | faul | lazy | char | person animal
stark | stark | strong | char | person animal
lustig | lustig | funny | char | person
wütend | wütend | angry | mood | person animal
gefährlich | gefährlich | dangerous | char | wild
rot | rot | red | colour | thing clothing vehicle building plant fruit furniture
blau | blau | blue | colour | thing clothing vehicle building furniture
grün | grün | green | colour | thing clothing vehicle building furniture plant fruit
gelb | gelb | yellow | colour | thing clothing vehicle building furniture plant fruit
schwarz | schwarz | black | colour | thing clothing vehicle furniture animal
weiß | weiß | white | colour | thing clothing vehicle building furniture animal plant
braun | braun | brown | colour | thing clothing furniture animal
grau | grau | grey | colour | thing clothing vehicle building animal
"""


@dataclass(frozen=True)
class Adj:
    pred: str
    stem: str
    en: str
    cat: str
    fits: frozenset[str]
    en_over: tuple[tuple[str, str], ...] = ()

    def de_attr(self, ending: str) -> str:
        if self.stem.endswith("e"):
            return self.stem + ending[1:]
        return self.stem + ending

    def en_for(self, tags: frozenset[str]) -> str:
        for tag, word in self.en_over:
            if tag in tags:
                return word
        return self.en


def _parse_adjs() -> list[Adj]:
    adjs = []
    for line in ADJ_TABLE.strip().splitlines():
        cols = [c.strip() for c in line.split("|")]
        over: list[tuple[str, str]] = []
        for item in cols[5].split() if len(cols) > 5 else []:
            tag, _, word = item.partition("=")
            over.append((tag, word))
        fits = cols[4].replace("@solid", "thing clothing vehicle building furniture plant")
        adjs.append(Adj(cols[0], cols[1], cols[2], cols[3], frozenset(fits.split()), tuple(over)))
    return adjs


ADJS = _parse_adjs()
ADJ_BY_DE = {a.pred: a for a in ADJS}

# ---------------------------------------------------------------------------------------------
# Lexicon: verbs
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verb:
    key: str
    inf: str  # full German infinitive, e.g. "anrufen", "spazieren gehen"
    prefix: str  # separable prefix ("an", "spazieren ") or ""
    pres: tuple[str, ...]  # present forms of the base verb for the six persons
    imp: str  # du-imperative of the base verb ("" = no imperative)
    part: str  # past participle incl. prefix ("" = no perfect)
    aux: str  # "haben" or "sein"
    en: str  # English base form
    en3: str  # English third person singular
    en_past: str
    en_pp: str
    en_tail: str  # particle/preposition after the English verb ("for", "up", "TV")
    frame: str  # intr, acc, dat, ditr, prep, lang, game
    subj: frozenset[str]
    obj: frozenset[str] = frozenset()
    dobj: frozenset[str] = frozenset()
    prep: tuple[str, str] | None = None  # German preposition and case of a prepositional object
    loc: tuple[str, ...] = ()  # location kinds allowed
    dirs: str = ""  # motion classes
    intr_ok: bool = False  # the object may be left out
    comp: bool = False  # a "mit" companion phrase is allowed
    modal_ok: bool = True
    gern_ok: bool = True
    praet: tuple[str, ...] | None = None  # Präteritum used instead of Perfekt (haben)
    stative: bool = False  # no time/frequency adverbs in the present
    need_loc: bool = False  # always takes a location phrase
    weight: float = 1.0


def en_third(base: str) -> str:
    if base == "have":
        return "has"
    if base.endswith(("s", "sh", "ch", "x", "z", "o")):
        return base + "es"
    if base.endswith("y") and base[-2] not in "aeiou":
        return base[:-1] + "ies"
    return base + "s"


def conjugate(base_inf: str, du: str | None, er: str | None, ei: bool) -> tuple[str, ...]:
    """Regular present tense (with optional stem-changing du/er forms)."""
    stem = base_inf[:-2]
    insert = ei or stem.endswith(("t", "d"))
    t_end = "et" if insert else "t"
    if stem.endswith(("s", "ß", "z", "x")):
        st_end = "t"
    else:
        st_end = "est" if insert else "st"
    return (stem + "e", du or stem + st_end, er or stem + t_end, base_inf, stem + t_end,
            base_inf)


def V(key: str, en: str, frame: str, subj: str, part: str, *, inf: str | None = None,
      prefix: str = "", obj: str = "", dobj: str = "", du: str | None = None,
      er: str | None = None, imp: str | None = None, forms: str | None = None,
      ei: bool = False, aux: str = "haben", prep: tuple[str, str] | None = None,
      loc: str = "", dirs: str = "", intr: bool = False, comp: bool = False,
      modal: bool = True, gern: bool = True, praet: str | None = None,
      stative: bool = False, need_loc: bool = False, weight: float = 1.0) -> Verb:
    full_inf = inf or key.split("_")[0]
    base_inf = full_inf[len(prefix):] if prefix else full_inf
    if forms:
        pres = tuple(forms.split())
    else:
        pres = conjugate(base_inf, du, er, ei)
    if imp is None:
        stem = base_inf[:-2]
        insert = ei or stem.endswith(("t", "d"))
        imp = stem + ("e" if insert else "")
    en_main, _, tail = en.partition("+")
    base, past, pp = en_main.split("/")
    return Verb(key=key, inf=full_inf, prefix=prefix, pres=pres, imp=imp, part=part, aux=aux,
                en=base, en3=en_third(base), en_past=past, en_pp=pp, en_tail=tail,
                frame=frame, subj=frozenset(subj.split()), obj=frozenset(obj.split()),
                dobj=frozenset(dobj.split()), prep=prep, loc=tuple(loc.split()), dirs=dirs,
                intr_ok=intr, comp=comp, modal_ok=modal, gern_ok=gern,
                praet=tuple(praet.split()) if praet else None, stative=stative,
                need_loc=need_loc, weight=weight)


P, A, AN = "person", "animal", "adult"
VERBS: list[Verb] = [
    # -- transitive (accusative object)
    V("lesen", "read/read/read", "acc", P, "gelesen", obj="read story", du="liest", er="liest",
      imp="lies", intr=True, loc="room surf out vehicle", weight=2),
    V("schreiben", "write/wrote/written", "acc", P, "geschrieben", obj="write", intr=True,
      loc="room out", weight=1.5),
    V("essen", "eat/ate/eaten", "acc", P, "gegessen", obj="food", du="isst", er="isst",
      imp="iss", intr=True, loc="room out table", weight=2.5),
    V("fressen", "eat/ate/eaten", "acc", A, "gefressen", obj="afood", du="frisst", er="frisst",
      imp="", intr=True, loc="out", weight=1.5),
    V("trinken", "drink/drank/drunk", "acc", P, "getrunken", obj="drink", loc="room out",
      weight=2),
    V("trinken_a", "drink/drank/drunk", "acc", A, "getrunken", obj="adrink", imp="", weight=0.5),
    V("kaufen", "buy/bought/bought", "acc", P,
      "gekauft", obj="food thing clothing vehicle flower drink", loc="shop", weight=2.5),
    V("verkaufen", "sell/sold/sold", "acc", AN, "verkauft", obj="thing clothing vehicle fruit bake",
      loc="shop", gern=False),
    V("sehen", "see/saw/seen", "acc", f"{P} {A}", "gesehen",
      obj="person animal pet insect vehicle building plant", du="siehst", er="sieht", imp="",
      loc="out room", gern=False, weight=2.5),
    V("finden", "find/found/found", "acc", f"{P} {A}", "gefunden", obj="small container clothing",
      imp="", gern=False, loc="room out surf", weight=1.5),
    V("suchen", "look/looked/looked+for", "acc", f"{P} {A}", "gesucht",
      obj="small container clothing pet fam", gern=False, loc="room out", weight=1.5),
    V("haben", "have/had/had", "acc", P, "", obj="pet thing clothing vehicle fam",
      forms="habe hast hat haben habt haben", praet="hatte hattest hatte hatten hattet hatten",
      imp="", gern=False, stative=True, weight=3),
    V("brauchen", "need/needed/needed", "acc", P, "gebraucht",
      obj="thing clothing container vehicle", imp="", gern=False, stative=True, weight=1.5),
    V("mögen", "like/liked/liked", "acc", f"{P} {A}", "", obj="food drink animal pet music",
      forms="mag magst mag mögen mögt mögen", imp="", modal=False, gern=False, stative=True,
      weight=2),
    V("lieben", "love/loved/loved", "acc", P, "", obj="fam pet", imp="", modal=False, gern=False,
      stative=True),
    V("tragen_w", "wear/wore/worn", "acc", P, "getragen", obj="clothing", du="trägst",
      er="trägt", imp="trag", weight=1.5),
    V("tragen_c", "carry/carried/carried", "acc", P, "getragen", obj="carry baby", du="trägst",
      er="trägt", imp="trag", gern=False),
    V("öffnen", "open/opened/opened", "acc", P, "geöffnet", obj="open", ei=True, gern=False,
      weight=1.5),
    V("schließen", "close/closed/closed", "acc", P, "geschlossen", obj="shut", imp="schließ",
      gern=False),
    V("malen", "paint/painted/painted", "acc", P, "gemalt", obj="paint animal", intr=True,
      loc="room out"),
    V("zeichnen", "draw/drew/drawn", "acc", P, "gezeichnet", obj="animal plant vehicle building",
      ei=True, intr=True, loc="room out"),
    V("waschen", "wash/washed/washed", "acc", P, "gewaschen",
      obj="car dish clothing dog baby", du="wäschst", er="wäscht", imp="wasch", gern=False),
    V("kochen", "cook/cooked/cooked", "acc", P, "gekocht", obj="cook", intr=True, loc="room",
      comp=True),
    V("backen", "bake/baked/baked", "acc", P, "gebacken", obj="bake", intr=True, loc="room"),
    V("besuchen", "visit/visited/visited", "acc", P, "besucht", obj="fam visit person",
      weight=2),
    V("fragen", "ask/asked/asked", "acc", P, "gefragt", obj="person", gern=False),
    V("rufen", "call/called/called", "acc", P, "gerufen", obj="person pet", gern=False),
    V("treffen", "meet/met/met", "acc", P, "getroffen", obj="person", du="triffst",
      er="trifft", imp="triff", loc="room out", weight=1.5),
    V("kennen", "know/knew/known", "acc", P, "", obj="person", imp="", modal=False,
      gern=False, stative=True),
    V("füttern", "feed/fed/fed", "acc", P, "gefüttert", obj="animal pet",
      forms="füttere fütterst füttert füttern füttert füttern", imp="füttere", loc="out"),
    V("holen", "fetch/fetched/fetched", "acc", P, "geholt", obj="thing container", gern=False),
    V("nehmen", "take/took/taken", "acc", P, "genommen", obj="thing container public",
      du="nimmst", er="nimmt", imp="nimm", gern=False, weight=1.5),
    V("halten", "hold/held/held", "acc", P, "gehalten", obj="small baby", du="hältst",
      er="hält", imp="halt", gern=False),
    V("werfen", "throw/threw/thrown", "acc", P, "geworfen", obj="throw", du="wirfst",
      er="wirft", imp="wirf", loc="out"),
    V("fangen", "catch/caught/caught", "acc", f"{P} cat dog", "gefangen", obj="catch",
      du="fängst", er="fängt", imp="fang", loc="out"),
    V("verlieren", "lose/lost/lost", "acc", P, "verloren", obj="small container clothing",
      gern=False, loc="room out vehicle"),
    V("vergessen", "forget/forgot/forgotten", "acc", P, "vergessen", obj="small container",
      du="vergisst", er="vergisst", imp="vergiss", gern=False),
    V("reparieren", "repair/repaired/repaired", "acc", AN, "repariert", obj="fix", loc="room out"),
    V("putzen", "clean/cleaned/cleaned", "acc", P, "geputzt", obj="clean dish"),
    V("bauen", "build/built/built", "acc", P, "gebaut", obj="build", loc="out"),
    V("schneiden", "cut/cut/cut", "acc", P, "geschnitten", obj="cut", gern=False),
    V("sprechen", "speak/spoke/spoken", "lang", P, "gesprochen", du="sprichst", er="spricht",
      imp="sprich", weight=1.5),
    V("lernen", "learn/learned/learned", "lang", P, "gelernt", intr=True, loc="room",
      weight=1.5),
    V("verstehen", "understand/understood/understood", "lang", P, "verstanden", imp="",
      gern=False, stative=True),
    V("spielen", "play/played/played", "game", P, "gespielt", intr=True, loc="room out",
      comp=True, weight=3),
    V("singen", "sing/sang/sung", "acc", P, "gesungen", obj="song", intr=True, loc="room out"),
    V("hören", "listen/listened/listened+to", "acc", P, "gehört", obj="music song"),
    V("anrufen", "phone/phoned/phoned", "acc", P, "angerufen", prefix="an", obj="person fam",
      weight=1.5),
    V("abholen", "pick/picked/picked+up", "acc", AN, "abgeholt", prefix="ab",
      obj="child fam person", gern=False),
    V("einladen", "invite/invited/invited", "acc", P, "eingeladen", prefix="ein", obj="person",
      du="lädst", er="lädt", imp="lad"),
    V("aufräumen", "tidy/tidied/tidied", "acc", P, "aufgeräumt", prefix="auf", obj="room"),
    V("anziehen", "put/put/put+on", "acc", P, "angezogen", prefix="an", obj="clothing",
      gern=False),
    V("ausziehen", "take/took/taken+off", "acc", P, "ausgezogen", prefix="aus", obj="clothing",
      gern=False),
    V("einschalten", "turn/turned/turned+on", "acc", P, "eingeschaltet", prefix="ein",
      obj="switch", gern=False),
    V("ausschalten", "turn/turned/turned+off", "acc", P, "ausgeschaltet", prefix="aus",
      obj="switch", gern=False),
    V("machen_hw", "do/did/done", "acc", P, "gemacht", obj="hw", gern=False),
    V("machen_foto", "take/took/taken", "acc", P, "gemacht", obj="photo", loc="out room"),
    # -- ditransitive (dative + accusative)
    V("geben", "give/gave/given", "ditr", P, "gegeben", obj="thing food flower", dobj="person",
      du="gibst", er="gibt", imp="gib", gern=False, weight=2),
    V("geben_a", "give/gave/given", "ditr", P, "gegeben", inf="geben", obj="afood",
      dobj="animal", du="gibst", er="gibt", imp="gib", gern=False, weight=0.7),
    V("zeigen", "show/showed/shown", "ditr", P, "gezeigt", obj="thing photo", dobj="person",
      gern=False),
    V("schicken", "send/sent/sent", "ditr", P, "geschickt", obj="send", dobj="person",
      gern=False),
    V("bringen", "bring/brought/brought", "ditr", P, "gebracht", obj="thing food flower",
      dobj="person", gern=False),
    V("erzählen", "tell/told/told", "ditr", P, "erzählt", obj="tell", dobj="person"),
    # -- dative object
    V("helfen", "help/helped/helped", "dat", P, "geholfen", obj="person", du="hilfst",
      er="hilft", imp="hilf", weight=2),
    V("danken", "thank/thanked/thanked", "dat", P, "gedankt", obj="person", imp="", gern=False),
    V("folgen", "follow/followed/followed", "dat", f"{P} {A}", "gefolgt", obj="person animal",
      aux="sein", gern=False),
    V("antworten", "answer/answered/answered", "dat", P, "geantwortet", obj="person",
      gern=False),
    V("gehören", "belong/belonged/belonged+to", "dat", "pet thing clothing vehicle", "",
      obj="person", imp="", modal=False, gern=False, stative=True),
    # -- prepositional object
    V("warten", "wait/waited/waited+for", "prep", P, "gewartet", obj="person public",
      prep=("auf", "acc"), gern=False, weight=1.5),
    V("denken", "think/thought/thought+of", "prep", P, "gedacht", obj="fam pet",
      prep=("an", "acc"), gern=False),
    V("sprechen_mit", "talk/talked/talked+to", "prep", P, "gesprochen", inf="sprechen",
      obj="person", prep=("mit", "dat"), du="sprichst", er="spricht", imp="sprich"),
    V("spielen_mit", "play/played/played+with", "prep", f"{P} dog cat", "gespielt",
      inf="spielen",
      obj="pet toy child", prep=("mit", "dat"), weight=1.5),
    # -- intransitive
    V("schlafen", "sleep/slept/slept", "intr", f"{P} {A} baby", "geschlafen", du="schläfst",
      er="schläft", imp="schlaf", loc="room surf out pos vehicle tree sky", weight=2.5),
    V("arbeiten", "work/worked/worked", "intr", AN, "gearbeitet", loc="room out", weight=2),
    V("wohnen", "live/lived/lived", "intr", P, "gewohnt", loc="home city", gern=False, imp="",
      need_loc=True, stative=True, weight=2),
    V("sitzen", "sit/sat/sat", "intr", f"{P} {A}", "gesessen",
      loc="surf room out pos vehicle tree table sky", need_loc=True, weight=2),
    V("stehen", "stand/stood/stood", "intr", f"{P} {A}", "gestanden", loc="room out pos",
      gern=False, need_loc=True),
    V("liegen", "lie/lay/lain", "intr", f"{P} {A}", "gelegen", loc="surf out sky", need_loc=True,
      weight=1.5),
    V("tanzen", "dance/danced/danced", "intr", P, "getanzt", loc="room out", comp=True),
    V("lachen", "laugh/laughed/laughed", "intr", f"{P} baby", "gelacht", gern=False),
    V("weinen", "cry/cried/cried", "intr", f"{P} baby", "geweint", gern=False),
    V("lächeln", "smile/smiled/smiled", "intr", f"{P} baby", "gelächelt",
      forms="lächle lächelst lächelt lächeln lächelt lächeln", imp="lächle", gern=False),
    V("schwimmen", "swim/swam/swum", "intr", f"{P} swim", "geschwommen", aux="sein",
      loc="water", dirs="s", weight=1.5),
    V("laufen", "run/ran/run", "intr", f"{P} {A}", "gelaufen", du="läufst", er="läuft",
      imp="lauf", aux="sein", loc="out", dirs="g", weight=1.5),
    V("gehen", "go/went/gone", "intr", P, "gegangen", aux="sein", dirs="gH", comp=True,
      weight=3),
    V("kommen", "come/came/come", "intr", P, "gekommen", aux="sein", dirs="gH", comp=True,
      gern=False, weight=2),
    V("fahren", "drive/drove/driven", "intr", AN, "gefahren", du="fährst", er="fährt",
      imp="fahr", aux="sein", dirs="dHC", weight=2),
    V("fahren_mit", "go/went/gone", "intr", P, "gefahren", inf="fahren", du="fährst",
      er="fährt", imp="fahr", aux="sein", dirs="dHC", weight=1.5),
    V("fliegen", "fly/flew/flown", "intr", AN, "geflogen", aux="sein", dirs="fC"),
    V("fliegen_b", "fly/flew/flown", "intr", "bird insect", "geflogen", inf="fliegen",
      aux="sein", loc="nature", imp=""),
    V("reisen", "travel/travelled/travelled", "intr", AN, "gereist", aux="sein", dirs="C",
      imp="reise"),
    V("springen", "jump/jumped/jumped", "intr", f"{P} {A}", "gesprungen", aux="sein", dirs="j"),
    V("klettern", "climb/climbed/climbed", "intr", f"{P} climb", "geklettert", aux="sein",
      forms="klettere kletterst klettert klettern klettert klettern", imp="klettere", dirs="c"),
    V("wandern", "hike/hiked/hiked", "intr", P, "gewandert", aux="sein", loc="nature",
      forms="wandere wanderst wandert wandern wandert wandern", imp="wandere"),
    V("bellen", "bark/barked/barked", "intr", "dog", "gebellt", loc="out room", imp=""),
    V("aufstehen", "get/got/got+up", "intr", P, "aufgestanden", prefix="auf", aux="sein",
      gern=False, weight=1.5),
    V("einkaufen", "go/went/gone+shopping", "intr", P, "eingekauft", prefix="ein", loc="shop",
      comp=True, weight=1.5),
    V("fernsehen", "watch/watched/watched+TV", "intr", P, "ferngesehen", prefix="fern",
      du="siehst", er="sieht", imp="sieh", loc="room", comp=True),
    V("ankommen", "arrive/arrived/arrived", "intr", f"{P} public", "angekommen", prefix="an",
      aux="sein", loc="arrive city", gern=False, imp=""),
    V("einschlafen", "fall/fell/fallen+asleep", "intr", f"{P} {A} baby", "eingeschlafen",
      prefix="ein", du="schläfst", er="schläft", imp="schlaf", aux="sein", loc="surf room",
      gern=False),
    V("spazieren_gehen", "go/went/gone+for a walk", "intr", P, "spazieren gegangen",
      prefix="spazieren ", inf="spazieren gehen", aux="sein", loc="nature", comp=True,
      weight=1.5),
    V("bleiben", "stay/stayed/stayed", "intr", P, "geblieben", aux="sein", loc="athome room",
      gern=False, need_loc=True),
    V("hängen", "hang/hung/hung", "intr", "hang", "gehangen", loc="wall", imp="", modal=False,
      gern=False, need_loc=True, stative=True, weight=0.7),
]
VERB_BY_KEY = {v.key: v for v in VERBS}

PRESENT_TIMES = [("heute", "today"), ("am Montag", "on Monday"), ("am Dienstag", "on Tuesday"),
                 ("am Mittwoch", "on Wednesday"), ("am Donnerstag", "on Thursday"),
                 ("am Freitag", "on Friday"), ("am Samstag", "on Saturday"),
                 ("am Sonntag", "on Sunday"), ("am Morgen", "in the morning"),
                 ("am Nachmittag", "in the afternoon"), ("am Abend", "in the evening"),
                 ("in der Nacht", "at night"), ("am Wochenende", "at the weekend"),
                 ("jeden Tag", "every day"), ("jeden Morgen", "every morning"),
                 ("jeden Abend", "every evening"), ("im Sommer", "in summer"),
                 ("im Winter", "in winter"), ("im Frühling", "in spring"),
                 ("im Herbst", "in autumn"), ("heute Abend", "this evening")]
FUTURE_TIMES = [("morgen", "tomorrow"), ("morgen früh", "tomorrow morning"),
                ("morgen Abend", "tomorrow evening"), ("übermorgen", "the day after tomorrow"),
                ("nächste Woche", "next week"), ("nächstes Jahr", "next year"),
                ("bald", "soon")]
PAST_TIMES = [("gestern", "yesterday"), ("gestern Abend", "yesterday evening"),
              ("vorgestern", "the day before yesterday"), ("letzte Woche", "last week"),
              ("letztes Jahr", "last year"), ("letzten Sommer", "last summer"),
              ("letzten Winter", "last winter")]
FREQS = [("oft", "often"), ("immer", "always"), ("manchmal", "sometimes"), ("nie", "never")]

# ---------------------------------------------------------------------------------------------
# Noun phrases, prepositional phrases and clauses
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NP:
    kind: str  # noun, name, pron, fixed
    noun: Noun | None = None
    det: str = "def"  # def indef poss dem num bare many some kein
    plural: bool = False
    adjs: tuple[Adj, ...] = ()
    poss: tuple[str, str] = ("", "")  # German stem, English word
    num: int = 0
    de_text: str = ""  # names, pronouns, fixed phrases
    en_text: str = ""
    p_idx: int = 2
    gender: str = "m"  # names and pronouns: m / f / p
    owner_: tuple[str, str] = ("", "")  # possessive for a pronoun derived from a noun
    de_kein: str = ""  # fixed objects: negated German form
    ptags: frozenset[str] = frozenset()  # noun tags of the antecedent of a pronoun

    @property
    def pidx(self) -> int:
        if self.kind == "pron":
            return self.p_idx
        return 5 if self.plural else 2

    @property
    def gkey(self) -> str:
        assert self.noun is not None
        return "p" if self.plural else self.noun.gender

    @property
    def tags(self) -> frozenset[str]:
        if self.noun is not None:
            return self.noun.tags
        if self.ptags:
            return self.ptags
        if self.kind in ("name", "pron"):
            return frozenset({"person"})
        return frozenset()

    def de(self, case: str) -> str:
        if self.kind == "fixed":
            return self.de_kein if self.det == "kein" else self.de_text
        if self.kind != "noun":
            return self.de_text
        assert self.noun is not None
        g, det, words = self.gkey, self.det, []
        table = STRONG
        if det == "def":
            words.append(DEF_ART[case][g])
            table = WEAK
        elif det == "dem":
            words.append(DIESER[case][g])
            table = WEAK
        elif det in ("indef", "kein", "poss"):
            stem = {"indef": "ein", "kein": "kein", "poss": self.poss[0]}[det]
            end = EIN_END[case][g]
            if stem == "euer" and end:
                stem = "eur"
            words.append(stem + end)
            table = MIXED
        elif det == "num":
            words.append(NUM_DE[self.num])
        elif det == "many":
            words.append("vielen" if case == "dat" else "viele")
        elif det == "some":
            words.append("einigen" if case == "dat" else "einige")
        for adj in self.adjs:
            words.append(adj.de_attr(table[case][g]))
        words.append(self.noun.de_form(case, self.plural))
        return " ".join(words)

    def en(self, no: bool = False) -> str:
        if self.kind != "noun":
            return self.en_text
        assert self.noun is not None
        rest = [a.en_for(self.noun.tags) for a in self.adjs] + [self.noun.en_form(self.plural)]
        det = self.det
        if no:
            first = "no"
        elif det == "def":
            first = "the"
        elif det == "dem":
            first = "these" if self.plural else "this"
        elif det in ("indef", "kein"):
            if self.plural or self.noun.mass:
                first = ""
            else:
                first = "an" if rest[0][0] in "aeiou" else "a"
        elif det == "poss":
            first = self.poss[1]
        elif det == "num":
            first = NUM_EN[self.num]
        elif det == "many":
            first = "many"
        elif det == "some":
            first = "some"
        else:
            first = ""
        return " ".join(([first] if first else []) + rest)

    def owner(self) -> tuple[str, str]:
        """German possessive stem and English possessive word referring back to this NP."""
        if self.owner_[0]:
            return self.owner_
        if self.kind == "name":
            return ("sein", "his") if self.gender == "m" else ("ihr", "her")
        assert self.noun is not None
        if self.plural:
            return ("ihr", "their")
        de = "ihr" if self.noun.gender == "f" else "sein"
        en = {"he": "his", "she": "her", "it": "its"}[self.noun.en_pron]
        return de, en

    def pronoun(self) -> NP:
        """The personal pronoun (nominative) that refers back to this NP."""
        if self.kind == "pron":
            return self
        if self.kind == "name":
            de, en = ("er", "he") if self.gender == "m" else ("sie", "she")
            return NP("pron", de_text=de, en_text=en, p_idx=2, owner_=self.owner())
        assert self.noun is not None
        if self.plural:
            return NP("pron", de_text="sie", en_text="they", p_idx=5, owner_=self.owner(),
                      ptags=self.noun.tags)
        de = {"m": "er", "f": "sie", "n": "es"}[self.noun.gender]
        return NP("pron", de_text=de, en_text=self.noun.en_pron, p_idx=2, owner_=self.owner(),
                  ptags=self.noun.tags)


@dataclass(frozen=True)
class PP:
    role: str  # loc, dir, comp, inst
    prep: str = ""
    case: str = "dat"
    np: NP | None = None
    en_prep: str = ""
    fixed: tuple[str, str] = ("", "")
    kind: str = ""  # location kind (room, out, water, ...) for loc phrases

    def de(self) -> str:
        if self.fixed[0]:
            return self.fixed[0]
        assert self.np is not None
        phrase = self.np.de(self.case)
        art, _, rest = phrase.partition(" ")
        if self.np.det == "def" and (self.prep, art) in CONTRACTIONS:
            return f"{CONTRACTIONS[(self.prep, art)]} {rest}"
        return f"{self.prep} {phrase}"

    def en(self) -> str:
        if self.fixed[0]:
            return self.fixed[1]
        assert self.np is not None and self.np.noun is not None
        np = self.np
        if np.det == "def" and not np.adjs and not np.plural:
            if self.role == "inst":
                return f"by {np.noun.en_form(False)}"
            key = (np.noun.sg, self.prep, self.role)
            if key in BARE_EN:
                return BARE_EN[key]
        return f"{self.en_prep} {np.en()}"


@dataclass(frozen=True)
class Clause:
    subj: NP
    verb: Verb
    obj: NP | None = None  # accusative / dative / prepositional object or fixed object
    dobj: NP | None = None  # dative object of a ditransitive verb
    pps: tuple[PP, ...] = ()
    time: tuple[str, str] | None = None
    freq: tuple[str, str] | None = None
    neg: bool = False
    tense: str = "pres"  # pres fut past perf werden modal gern
    modal: str = ""
    front: str = "subj"  # subj time place freq dann
    please: bool = False

    @property
    def nicht(self) -> bool:
        """Negation by 'nicht' (as opposed to 'kein', which lives in the object)."""
        if not self.neg or self.tense == "gern":
            return False
        return not (self.obj is not None and self.obj.det == "kein")


def de_words(*parts: str) -> str:
    return " ".join(p for p in parts if p)


def render_de(c: Clause, mode: str = "decl", wh: str = "") -> str:
    """German clause.  mode: decl, ynq (yes/no question), imp; wh: subj, obj, loc, dir, time."""
    v = c.verb
    subj_pidx = 2 if wh == "subj" else c.subj.pidx
    if c.tense in ("pres", "fut", "gern"):
        fin, right = v.pres[subj_pidx], v.prefix.strip()
    elif c.tense == "past" and v.praet:
        fin, right = v.praet[subj_pidx], v.prefix.strip()
    elif c.tense in ("past", "perf"):
        fin, right = (HABEN if v.aux == "haben" else SEIN)[subj_pidx], v.part
    elif c.tense == "werden":
        fin, right = WERDEN[subj_pidx], v.inf
    elif c.tense == "modal":
        fin, right = MODALS[c.modal][subj_pidx], v.inf
    else:
        raise ValueError(c.tense)
    if mode == "imp":
        fin = v.imp
    front_pp = None
    if c.front == "place":
        front_pp = next(p for p in c.pps if p.role == "loc")

    mf: list[str] = []
    if mode != "imp" and wh != "subj" and not (mode == "decl" and not wh and c.front == "subj"):
        mf.append(c.subj.de("nom"))
    if c.time and c.front != "time" and wh != "time":
        mf.append(c.time[0])
    if c.freq and c.front != "freq":
        mf.append(c.freq[0])
    if c.tense == "gern":
        mf.append("nicht gern" if c.neg else "gern")
    if c.dobj is not None:
        mf.append(c.dobj.de("dat"))
    # Bare games/languages ("Geige spielen", "Deutsch lernen") go to the end of the middle field.
    late_obj = c.obj is not None and c.obj.kind == "fixed"
    if c.obj is not None and wh != "obj" and v.frame != "prep" and not late_obj:
        mf.append(c.obj.de("dat" if v.frame == "dat" else "acc"))
    if c.nicht:
        mf.append("nicht")
    if c.obj is not None and v.frame == "prep":
        assert v.prep is not None
        mf.append(PP("obj", v.prep[0], v.prep[1], c.obj).de())
    for role in ("inst", "comp", "loc", "dir"):
        for p in c.pps:
            if p.role == role and p is not front_pp and wh != role:
                mf.append(p.de())
    if late_obj and wh != "obj":
        assert c.obj is not None
        mf.append(c.obj.de("acc"))

    if mode == "imp":
        return de_words("bitte" if c.please else "", fin, *mf, right)
    if mode == "ynq":
        return de_words(fin, *mf, right)
    if wh:
        word = {"subj": "wer", "loc": "wo", "dir": "wohin", "time": "wann"}.get(wh, "")
        if wh == "obj":
            assert c.obj is not None
            word = ("wem" if v.frame == "dat" else "wen") if "person" in c.obj.tags else "was"
        return de_words(word, fin, *mf, right)
    if c.front == "subj":
        vf = c.subj.de("nom")
    elif c.front == "time":
        assert c.time is not None
        vf = c.time[0]
    elif c.front == "freq":
        assert c.freq is not None
        vf = c.freq[0]
    elif c.front == "dann":
        vf = "dann"
    else:
        assert front_pp is not None
        vf = front_pp.de()
    return de_words(vf, fin, *mf, right)


def en_vp(c: Clause, pidx: int, inverted: bool) -> tuple[str, list[str]]:
    """English auxiliary (possibly empty) and main verb words for the clause's tense."""
    v, s3, neg = c.verb, pidx == 2, c.neg
    base = v.en
    if c.tense == "pres":
        if neg or inverted:
            return ("does" if s3 else "do") + (" not" if neg else ""), [base]
        return "", [v.en3 if s3 else base]
    if c.tense in ("fut", "werden"):
        return "will not" if neg else "will", [base]
    if c.tense == "past":
        if neg or inverted:
            return "did not" if neg else "did", [base]
        return "", [v.en_past]
    if c.tense == "perf":
        return ("has" if s3 else "have") + (" not" if neg else ""), [v.en_pp]
    if c.tense == "gern" or (c.tense == "modal" and c.modal == "wollen"):
        word = "like" if c.tense == "gern" else "want"
        if neg or inverted:
            return ("does" if s3 else "do") + (" not" if neg else ""), [word, "to", base]
        return "", [en_third(word) if s3 else word, "to", base]
    if c.tense == "modal":
        if c.modal == "koennen":
            return ("cannot" if neg else "can"), [base]
        if c.modal == "muessen":
            return "must", [base]
        return "would", ["like", "to", base]
    raise ValueError(c.tense)


def render_en(c: Clause, mode: str = "decl", wh: str = "") -> str:
    """English clause, same modes as render_de."""
    v = c.verb
    front_pp = None
    if c.front == "place":
        front_pp = next(p for p in c.pps if p.role == "loc")
    after: list[str] = []
    if v.en_tail:
        after.append(v.en_tail)
    if c.dobj is not None:
        after.append(c.dobj.en())
    if c.obj is not None and wh != "obj":
        after.append(c.obj.en())
    for role in ("dir", "inst", "comp", "loc"):
        for p in c.pps:
            if p.role == role and p is not front_pp and wh != role:
                after.append(p.en())
    if c.time and c.front != "time" and wh != "time":
        after.append(c.time[1])

    if mode == "imp":
        lead = "do not" if c.neg else ("please" if c.please else "")
        return de_words(lead, v.en, *after)
    if wh == "subj":
        aux, main = en_vp(c, 2, inverted=False)
        return de_words("who", aux, *main, *after)
    if mode == "ynq" or wh:
        aux, main = en_vp(c, c.subj.pidx, inverted=True)
        word = {"loc": "where", "dir": "where", "time": "when"}.get(wh, "")
        if wh == "obj":
            assert c.obj is not None
            word = "who" if "person" in c.obj.tags else "what"
        return de_words(word, aux, c.subj.en(), *main, *after)
    aux, main = en_vp(c, c.subj.pidx, inverted=False)
    freq = c.freq[1] if c.freq and c.front != "freq" else ""
    if aux:
        core = [c.subj.en(), aux, freq, *main]
    else:
        core = [c.subj.en(), freq, *main]
    lead = ""
    if c.front == "time":
        assert c.time is not None
        lead = c.time[1]
    elif c.front == "freq":
        assert c.freq is not None
        lead = c.freq[1]
    elif c.front == "dann":
        lead = "then"
    elif front_pp is not None:
        lead = front_pp.en()
    return de_words(lead, *core, *after)


def sentence(text: str, punct: str) -> str:
    text = text.strip()
    return text[:1].upper() + text[1:] + punct


# ---------------------------------------------------------------------------------------------
# The generator
# ---------------------------------------------------------------------------------------------


class Generator:
    """Draws random sentence pairs from the template grammar (deterministic for a seed)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self._cache: dict[tuple[str, ...], list[Noun]] = {}

    # -- helpers ------------------------------------------------------------------------------

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def pick(self, items: Sequence[T]) -> T:
        return items[self.rng.randrange(len(items))]

    def weighted(self, options: Sequence[tuple[float, T]]) -> T:
        total = sum(w for w, _ in options)
        r = self.rng.random() * total
        for w, item in options:
            r -= w
            if r < 0:
                return item
        return options[-1][1]

    def nouns_with(self, tags: Sequence[str]) -> list[Noun]:
        key = tuple(sorted(tags))
        if key not in self._cache:
            self._cache[key] = [n for n in NOUNS if n.tags & set(key)]
        return self._cache[key]

    def noun(self, tags: Sequence[str]) -> Noun:
        return self.pick(self.nouns_with(tags))

    @staticmethod
    def adjectives_for(noun: Noun, cats: Sequence[str] | None = None) -> list[Adj]:
        return [a for a in ADJS if a.fits & noun.tags and (cats is None or a.cat in cats)]

    def pick_adjs(self, noun: Noun, p: float = 0.25) -> tuple[Adj, ...]:
        if not self.chance(p):
            return ()
        cands = [a for a in self.adjectives_for(noun) if a.cat != "mood"]
        if not cands:
            return ()
        first = self.pick(cands)
        if first.cat in ("size", "age", "qual") and self.chance(0.15):
            colours = [a for a in cands if a.cat == "colour"]
            if colours:
                return (first, self.pick(colours))
        return (first,)

    def np(self, noun: Noun, role: str = "obj", owner: NP | None = None,
           adj_p: float = 0.25, allow_plural: bool = True) -> NP:
        """A noun phrase with a random determiner suited to the noun."""
        adjs = self.pick_adjs(noun, adj_p)
        if noun.plural_only:
            plural = True
        elif noun.mass or noun.pl is None:
            plural = False
        else:
            plural = allow_plural and self.chance(0.25)
        fam = "fam" in noun.tags
        can_pos = "nopos" not in noun.tags and not noun.mass
        if noun.mass:
            det = self.weighted([(4, "def"), (6 if role == "obj" else 0, "bare")])
            if det == "bare" and not adjs and self.chance(0.3):
                extra = self.adjectives_for(noun, ("temp", "taste", "qual"))
                if extra:
                    adjs = (self.pick(extra),)
        elif plural:
            det = self.weighted([
                (5, "def"), (3, "num"), (3 if can_pos else 0, "poss"),
                (1.5 if role == "obj" and not fam else 0, "bare"),
                (1 if not fam else 0, "many"), (1 if not fam else 0, "some"), (0.7, "dem")])
            if noun.plural_only and det in ("num", "many", "some") and noun.pl != "Leute":
                det = "def"
        else:
            det = self.weighted([
                (3 if fam else 5, "def"), (1 if fam else 3, "indef"),
                ((6 if fam else 2) if can_pos else 0, "poss"), (0.8, "dem")])
        if "hw" in noun.tags:
            det = self.weighted([(1, "def"), (4, "poss")])
        poss = ("", "")
        if det == "poss":
            human_owner = owner is not None and "person" in owner.tags
            if owner is not None and (human_owner or "person" not in noun.tags) \
                    and self.chance(0.65):
                poss = owner.owner()
            else:
                poss = self.pick(POSSESSIVES)
        num = self.rng.randint(2, 12) if det == "num" else 0
        return NP("noun", noun, det, plural, adjs, poss, num)

    def pronoun_np(self, choices: Sequence[tuple[str, str, int, str, str]] = PRONOUNS) -> NP:
        de, en, pidx, own_de, own_en = self.pick(choices)
        return NP("pron", de_text=de, en_text=en, p_idx=pidx, owner_=(own_de, own_en),
                  gender={"er": "m", "sie": "f" if pidx == 2 else "p"}.get(de, "p"))

    def name_np(self, gender: str = "") -> NP:
        names = [n for n in NAMES if not gender or n[1] == gender]
        name, g = self.pick(names)
        return NP("name", de_text=name, en_text=name, gender=g)

    def subject(self, tags: frozenset[str], allow_pron: bool = True) -> NP:
        human = bool(tags & {"person", "adult"})
        r = self.rng.random()
        if human and allow_pron and r < 0.25:
            return self.pronoun_np()
        if human and r < 0.37:
            return self.name_np()
        if "adult" in tags:
            cands = self.nouns_with(["adult", *sorted(tags - {"adult", "person"})])
        else:
            cands = self.nouns_with(sorted(tags))
        noun = self.pick([n for n in cands if not n.mass])
        return self.np(noun, role="subj")

    def time_for(self, tense: str) -> tuple[str, str]:
        if tense == "fut":
            return self.pick(FUTURE_TIMES)
        if tense == "past":
            return self.pick(PAST_TIMES)
        if self.chance(0.15):
            n = self.rng.randint(1, 12)
            de = "ein" if n == 1 else NUM_DE[n]
            return (f"um {de} Uhr", f"at {NUM_EN[n]} o'clock")
        return self.pick(PRESENT_TIMES)

    def place_np(self, noun: Noun, owner: NP | None, poss: bool = True) -> NP:
        poss = poss and bool(noun.tags & POSS_PLACE_TAGS)
        if owner is not None and "person" not in owner.tags:
            owner = None
        adjs = self.pick_adjs(noun, 0.15)
        det = self.weighted([(7, "def"), (1.2, "indef"), (1.2 if poss else 0, "poss"),
                             (0.5, "dem")])
        if noun.mass or ("person" in noun.tags and det == "indef"):
            det = "def"
        if noun.mass:
            adjs = ()
        owner_word = ("", "")
        if det == "poss":
            if owner is not None and self.chance(0.6):
                owner_word = owner.owner()
            else:
                owner_word = self.pick(POSSESSIVES)
        return NP("noun", noun, det, False, adjs, owner_word)

    def loc_pp(self, kinds: Sequence[str], owner: NP | None = None, persons: bool = False,
               poss: bool = True) -> PP | None:
        """A location phrase (preposition + dative) of one of the given kinds."""
        options: list[tuple[Noun, tuple[str, str, str]]] = []
        for n in NOUNS:
            for entry in n.locs:
                if entry[0] in kinds:
                    options.append((n, entry))
        if persons and "pos" in kinds:
            for n in self.nouns_with(["person"]):
                if n.sg is not None:
                    options.append((n, ("pos", "neben", "next to")))
        fixed: list[tuple[str, str]] = []
        if "athome" in kinds:
            fixed.append(("zu Hause", "at home"))
        if "city" in kinds:
            fixed.extend((f"in {de}", f"in {en}") for de, en in CITIES)
        if fixed and (not options or self.chance(0.35)):
            return PP("loc", fixed=self.pick(fixed), kind="city")
        if not options:
            return None
        noun, (kind, prep, en_prep) = self.pick(options)
        return PP("loc", prep, "dat", self.place_np(noun, owner, poss), en_prep, kind=kind)

    def dir_pp(self, classes: str, owner: NP | None = None) -> PP | None:
        """A destination phrase for the given motion classes (see DIR_TABLE)."""
        options: list[tuple[Noun, tuple[str, str, str]]] = []
        motion = [c for c in classes if c.islower()]
        for n in NOUNS:
            for entry in n.dirs:
                if any(m in entry[0] for m in motion):
                    options.append((n, entry))
        fixed: list[tuple[str, str]] = []
        if "H" in classes:
            fixed.append(("nach Hause", "home"))
        if "C" in classes:
            fixed.extend((f"nach {de}", f"to {en}") for de, en in CITIES)
        if fixed and (not options or self.chance(0.3)):
            return PP("dir", fixed=self.pick(fixed))
        if not options:
            return None
        noun, (_, prep, en_prep) = self.pick(options)
        case = "dat" if prep == "zu" else "acc"
        return PP("dir", prep, case, self.place_np(noun, owner), en_prep)

    def comp_pp(self, owner: NP) -> PP:
        noun = self.noun(["fam", "dog", "child"])
        np = self.np(noun, owner=owner, allow_plural=self.chance(0.2))
        if np.det in ("bare", "some", "indef"):
            np = replace(np, det="def")
        return PP("comp", "mit", "dat", np, "with")

    # -- clause building ----------------------------------------------------------------------

    def pick_verb(self, pred: Callable[[Verb], bool] | None = None) -> Verb:
        cands = [v for v in VERBS if pred is None or pred(v)]
        return self.weighted([(v.weight, v) for v in cands])

    def object_for(self, v: Verb, subj: NP, tense: str) -> NP:
        if v.frame == "lang":
            de, en = self.pick(LANGUAGES)
            return NP("fixed", det="bare", de_text=de, en_text=en, de_kein=f"kein {de}")
        if v.frame == "game":
            de, en = self.pick(GAMES)
            return NP("fixed", det="bare", de_text=de, en_text=en)
        noun = self.noun(sorted(v.obj))
        np = self.np(noun, owner=subj)
        if tense == "gern" and np.det in ("indef", "num", "dem") and not noun.mass:
            if noun.pl is not None:
                np = replace(np, det="bare", plural=True, num=0)
            else:
                np = replace(np, det="def")
        return np

    def pick_tense(self, v: Verb, subj: NP) -> str:
        opts: list[tuple[float, str]]
        if v.stative:
            opts = [(70, "pres"), (10 if v.praet else 0, "past"),
                    (10 if v.modal_ok else 0, "modal")]
            return self.weighted(opts)
        opts = [(55, "pres"), (10, "fut")]
        if v.part or v.praet:
            opts.append((13, "past"))
        if v.part:
            opts += [(6, "perf"), (4, "werden")]
        if v.modal_ok:
            opts.append((10, "modal"))
        if v.gern_ok and "person" in subj.tags:
            opts.append((3, "gern"))
        return self.weighted(opts)

    def clause(self, v: Verb | None = None, tense: str | None = None, neg: bool | None = None,
               allow_front: bool = True, subj: NP | None = None, time_p: float = 0.3) -> Clause:
        """A random clause; the arguments fix parts of it."""
        if v is None:
            v = self.pick_verb()
        if subj is None:
            subj = self.subject(v.subj)
        if tense is None:
            tense = self.pick_tense(v, subj)
        modal = ""
        if tense == "modal":
            modal = self.weighted([(4, "koennen"), (3, "wollen"), (2, "muessen"),
                                   (2, "moechten")])
        if neg is None:
            neg = self.chance(0.15)
        if neg and tense == "modal" and modal in ("muessen", "moechten"):
            neg = False

        obj = dobj = None
        if v.frame in ("acc", "lang", "game", "dat", "prep"):
            if not (v.intr_ok and self.chance(0.2)):
                obj = self.object_for(v, subj, tense)
                for _ in range(3):
                    if obj.noun is None or obj.noun is not subj.noun:
                        break
                    obj = self.object_for(v, subj, tense)
        if v.frame == "ditr":
            obj = self.object_for(v, subj, tense)
            dobj = self.np(self.noun(sorted(v.dobj)), owner=subj, allow_plural=self.chance(0.2))
            if dobj.det in ("bare", "some", "many", "num"):
                dobj = replace(dobj, det="def", num=0)
        if obj is not None and v.frame in ("dat", "prep") and obj.det in ("bare", "some"):
            obj = replace(obj, det="def")
        if neg and obj is not None and v.frame in ("acc", "ditr", "lang") and tense != "gern":
            if obj.det in ("indef", "bare") and not (obj.kind == "fixed" and not obj.de_kein):
                obj = replace(obj, det="kein")
            elif obj.det in ("num", "many", "some"):
                obj = replace(obj, det="def", num=0)
        if neg and obj is not None and obj.kind == "fixed" and not obj.de_kein:
            neg = False

        pps: list[PP] = []
        if v.key == "fahren_mit":
            vehicle = self.noun(["public", "bike"]) if self.chance(0.6) else NOUN_BY_DE["Auto"]
            pps.append(PP("inst", "mit", "dat", NP("noun", vehicle, "def"), "with"))
        if v.comp and self.chance(0.2):
            pps.append(self.comp_pp(subj))
        if v.dirs and (not v.loc or self.chance(0.7)) and \
                (v.key != "fahren_mit" or self.chance(0.6)):
            pp = self.dir_pp(v.dirs, subj)
            if pp is not None:
                pps.append(pp)
        has_dir = any(p.role == "dir" for p in pps)
        if v.loc and not has_dir and (v.need_loc or (obj is None and self.chance(0.6))
                                      or self.chance(0.15)):
            pp = self.loc_pp(v.loc, subj, persons="person" in subj.tags)
            if pp is not None:
                pps.append(pp)

        time = freq = None
        if tense in ("fut", "past"):
            time = self.time_for(tense)
        elif v.stative:
            pass
        elif tense == "pres" and not neg and self.chance(0.08):
            freq = self.pick(FREQS)
        elif tense in ("pres", "modal", "gern") and self.chance(time_p):
            time = self.time_for("pres")
        front = "subj"
        if allow_front:
            if time is not None and self.chance(0.4):
                front = "time"
            elif freq is not None and freq[0] == "manchmal" and self.chance(0.5):
                front = "freq"
            elif any(p.role == "loc" for p in pps) and self.chance(0.15):
                front = "place"
        return Clause(subj, v, obj, dobj, tuple(pps), time, freq, neg, tense, modal, front)

    # -- templates ----------------------------------------------------------------------------

    def t_statement(self) -> tuple[str, str]:
        c = self.clause()
        punct = "!" if self.chance(0.02) else "."
        return sentence(render_en(c), punct), sentence(render_de(c), punct)

    def t_question(self) -> tuple[str, str]:
        c = replace(self.clause(neg=False, allow_front=False, time_p=0.2), freq=None)
        v = c.verb
        opts: list[tuple[float, str]] = [(5, "")]
        if c.obj is not None and v.frame in ("acc", "dat") and c.obj.kind == "noun" \
                and c.tense != "gern":
            opts.append((3, "obj"))
        if c.subj.kind == "noun" and c.tense != "gern":
            opts.append((1.5, "subj"))
        if any(p.role == "loc" for p in c.pps):
            opts.append((2, "loc"))
        if any(p.role == "dir" for p in c.pps) and v.key in self.WHERE_TO_VERBS:
            opts.append((2, "dir"))
        if c.time is not None and c.tense in ("pres", "fut"):
            opts.append((1, "time"))
        wh = self.weighted(opts)
        if wh in ("obj", "subj") and c.tense == "past" and c.verb.praet:
            wh = ""
        if wh and c.tense == "perf":
            c = replace(c, tense="past")  # "Wo hat er gewohnt?" -> "Where did he live?"
        mode = "decl" if wh else "ynq"
        return sentence(render_en(c, mode, wh), "?"), sentence(render_de(c, mode, wh), "?")

    WHERE_TO_VERBS = ("gehen", "fahren", "fliegen", "reisen")
    NEG_ONLY_IMP = ("vergessen", "verlieren", "weinen")

    def t_imperative(self) -> tuple[str, str]:
        v = self.pick_verb(pred=lambda v: bool(v.imp) and "person" in v.subj)
        you = NP("pron", de_text="du", en_text="you", p_idx=1, owner_=("dein", "your"))
        neg = v.key in self.NEG_ONLY_IMP or self.chance(0.15)
        c = self.clause(v, tense="pres", neg=neg, allow_front=False, subj=you, time_p=0.0)
        c = replace(c, freq=None, please=not c.neg and self.chance(0.3))
        if c.obj is not None and c.obj.kind == "noun" and c.obj.det in ("kein", "indef", "dem") \
                and (c.neg or v.frame in ("dat", "prep")):
            c = replace(c, obj=replace(c.obj, det="def"))
        return sentence(render_en(c, "imp"), "!"), sentence(render_de(c, "imp"), "!")

    def copula(self, subj: NP, pred_de: str, pred_en: str, neg: bool, tense: str,
               mode: str, time: tuple[str, str] | None = None, front_time: bool = False,
               nicht: bool = True) -> tuple[str, str]:
        """A clause with 'sein'; pred_de/pred_en is the predicate (adjective, place, ...)."""
        pidx = subj.pidx
        fin = (WAR if tense == "past" else SEIN)[pidx]
        neg_de = "nicht" if neg and nicht else ""
        if tense == "fut":
            en_verb = ["will", "not", "be"] if neg else ["will", "be"]
        else:
            en_verb = [(WAS_EN if tense == "past" else BE_EN)[pidx]] + (["not"] if neg else [])
        t_de, t_en = time if time else ("", "")
        if mode == "ynq":
            de = de_words(fin, subj.de("nom"), t_de, neg_de, pred_de)
            if en_verb[0] == "will":
                en = de_words("will", subj.en(), "be", pred_en, t_en)
            else:
                en = de_words(en_verb[0], subj.en(), pred_en, t_en)
            return sentence(en, "?"), sentence(de, "?")
        if front_time and time:
            de = de_words(t_de, fin, subj.de("nom"), neg_de, pred_de)
            en = de_words(t_en, subj.en(), *en_verb, pred_en)
        else:
            de = de_words(subj.de("nom"), fin, t_de, neg_de, pred_de)
            en = de_words(subj.en(), *en_verb, pred_en, t_en)
        punct = "!" if mode == "excl" else "."
        return sentence(en, punct), sentence(de, punct)

    def random_tense_time(self, p_time: float = 0.2) -> tuple[str, tuple[str, str] | None, bool]:
        tense = self.weighted([(70, "pres"), (15, "past"), (8, "fut")])
        time = None
        if tense != "pres" or self.chance(p_time):
            time = self.time_for(tense)
        return tense, time, time is not None and self.chance(0.5)

    def t_copula_adj(self) -> tuple[str, str]:
        if self.chance(0.3):
            subj = self.subject(frozenset({"person"}))
            adjs = [a for a in ADJS if a.cat in ("mood", "char") and "person" in a.fits]
        else:
            noun = self.noun(["person", "animal", "thing", "clothing", "vehicle", "building",
                              "room", "food", "drink", "plant", "container", "place", "baby"])
            subj = self.np(noun, role="subj", adj_p=0.1)
            if subj.det not in ("def", "poss", "dem"):
                subj = replace(subj, det="def", num=0)
            adjs = [a for a in self.adjectives_for(noun) if a not in subj.adjs]
        adj = self.pick(adjs)
        very = adj.cat != "colour" and self.chance(0.2)
        pred_de = ("sehr " if very else "") + adj.pred
        pred_en = ("very " if very else "") + adj.en_for(subj.tags)
        if adj.cat in ("mood", "state", "temp"):
            tense, time, front = self.random_tense_time()
        else:
            tense, time, front = "pres", None, False
        mode = "ynq" if self.chance(0.15) else ("excl" if very and self.chance(0.4) else "decl")
        neg = mode == "decl" and not very and self.chance(0.2)
        return self.copula(subj, pred_de, pred_en, neg, tense, mode, time, front)

    def t_copula_loc(self) -> tuple[str, str]:
        r = self.rng.random()
        if r < 0.4:
            noun = self.noun(["small", "thing", "clothing", "container", "toy"])
            kinds: tuple[str, ...] = ("surf", "pos", "box")
        elif r < 0.7:
            noun = self.noun(["animal", "pet"])
            kinds = ("surf", "pos", "out", "room", "tree", "sky")
        else:
            noun = self.noun(["person"])
            kinds = ("room", "out", "pos", "vehicle", "sky")
        subj = self.np(noun, role="subj", adj_p=0.15)
        if subj.det not in ("def", "poss", "dem"):
            subj = replace(subj, det="def", num=0)
        if self.chance(0.25):
            en = sentence(f"where {'are' if subj.plural else 'is'} {subj.en()}", "?")
            de = sentence(f"wo {'sind' if subj.plural else 'ist'} {subj.de('nom')}", "?")
            return en, de
        pp = self.loc_pp(kinds, persons=r >= 0.4)
        assert pp is not None
        tense, time, front = self.random_tense_time()
        mode = "ynq" if self.chance(0.12) else "decl"
        neg = mode == "decl" and self.chance(0.12)
        return self.copula(subj, pp.de(), pp.en(), neg, tense, mode, time, front)

    def t_es_gibt(self) -> tuple[str, str]:
        pp = self.loc_pp(("room", "out", "surf", "box", "water"), poss=False)
        assert pp is not None
        if pp.kind in ("box", "surf"):
            tags = ["small", "thing", "food", "toy"]
        elif pp.kind == "water":
            tags = ["fish", "swim"]
        elif pp.kind == "out":
            tags = ["animal", "plant", "vehicle", "building"]
        else:
            tags = ["thing", "furniture", "food", "pet"]
        noun = self.noun(tags)
        obj = self.np(noun, adj_p=0.3)
        if obj.det in ("def", "dem", "poss"):
            obj = replace(obj, det="num" if obj.plural else ("bare" if noun.mass else "indef"),
                          num=self.rng.randint(2, 12) if obj.plural else 0)
        neg = self.chance(0.2)
        if neg:
            obj = replace(obj, det="kein", num=0)
        en_obj = obj.en(no=neg)
        tense, time = "pres", None
        if self.chance(0.15):
            tense, time = "past", self.time_for("past")
        fin = "gab" if tense == "past" else "gibt"
        if tense == "past":
            there = "there were" if obj.plural else "there was"
        else:
            there = "there are" if obj.plural else "there is"
        t_de, t_en = time if time else ("", "")
        if not neg and tense == "pres" and self.chance(0.12):
            q_en = de_words("are there" if obj.plural else "is there", en_obj, pp.en())
            q_de = de_words("gibt es", obj.de("acc"), pp.de())
            return sentence(q_en, "?"), sentence(q_de, "?")
        if self.chance(0.7):
            de = de_words(pp.de(), fin, "es", t_de, obj.de("acc"))
            en = de_words(pp.en(), there, en_obj, t_en)
        else:
            de = de_words("es", fin, t_de, obj.de("acc"), pp.de())
            en = de_words(there, en_obj, pp.en(), t_en)
        return sentence(en, "."), sentence(de, ".")

    def t_das_ist(self) -> tuple[str, str]:
        noun = self.noun(["person", "animal", "thing", "vehicle", "building", "clothing",
                          "plant"])
        np = self.np(noun, role="subj", adj_p=0.35)
        if np.det == "dem":
            np = replace(np, det="def")
        if np.det in ("bare", "many", "some"):
            np = replace(np, det="num", num=self.rng.randint(2, 12))
        plural = np.plural
        if self.chance(0.15) and np.det in ("indef", "poss", "def"):
            en = sentence(f"{'are those' if plural else 'is that'} {np.en()}", "?")
            de = sentence(f"{'sind' if plural else 'ist'} das {np.de('nom')}", "?")
            return en, de
        neg = np.det != "num" and self.chance(0.2)
        if neg and np.det == "indef":
            de = f"das ist {replace(np, det='kein').de('nom')}"
        else:
            de = f"das {'sind' if plural else 'ist'} {'nicht ' if neg else ''}{np.de('nom')}"
        en = f"{'those are' if plural else 'that is'} {'not ' if neg else ''}{np.en()}"
        return sentence(en, "."), sentence(de, ".")

    PROFESSIONS = [
        ("Lehrer", "Lehrerin", "teacher", "Lehrer", "teachers"),
        ("Arzt", "Ärztin", "doctor", "Ärzte", "doctors"),
        ("Koch", "Köchin", "cook", "Köche", "cooks"),
        ("Bäcker", "Bäckerin", "baker", "Bäcker", "bakers"),
        ("Bauer", "Bäuerin", "farmer", "Bauern", "farmers"),
        ("Student", "Studentin", "student", "Studenten", "students"),
        ("Fahrer", "Fahrerin", "driver", "Fahrer", "drivers"),
        ("Pilot", "Pilotin", "pilot", "Piloten", "pilots"),
        ("Sänger", "Sängerin", "singer", "Sänger", "singers"),
        ("Künstler", "Künstlerin", "artist", "Künstler", "artists"),
        ("Journalist", "Journalistin", "journalist", "Journalisten", "journalists"),
        ("Ingenieur", "Ingenieurin", "engineer", "Ingenieure", "engineers"),
        ("Architekt", "Architektin", "architect", "Architekten", "architects"),
        ("Friseur", "Friseurin", "hairdresser", "Friseure", "hairdressers"),
        ("Tierarzt", "Tierärztin", "vet", "Tierärzte", "vets"),
        ("Mechaniker", "Mechanikerin", "mechanic", "Mechaniker", "mechanics"),
        ("Kellner", "Kellnerin", "waiter", "Kellner", "waiters"),
    ]
    PUPIL = ("Schüler", "Schülerin", "pupil", "Schüler", "pupils")
    PROF_SUBJECTS = ("Mann", "Frau", "Junge", "Mädchen", "Nachbar", "Freund", "Mutter", "Vater",
                     "Bruder", "Schwester", "Sohn", "Tochter", "Onkel", "Tante")

    def t_profession(self) -> tuple[str, str]:
        """'Mein Vater ist Arzt.' -- no article, and the feminine form for female subjects."""
        child = False
        if self.chance(0.3):
            subj = self.name_np()
            female, plural = subj.gender == "f", False
        else:
            noun = NOUN_BY_DE[self.pick(self.PROF_SUBJECTS)]
            subj = self.np(noun, role="subj", adj_p=0.1, allow_plural=self.chance(0.2))
            if subj.det not in ("def", "poss", "dem"):
                subj = replace(subj, det="def", num=0)
            female, plural, child = "female" in noun.tags, subj.plural, "child" in noun.tags
            if not plural and noun.gender != "n" and self.chance(0.3):
                subj = subj.pronoun()
        m, f, en, m_pl, en_pl = self.PUPIL if child else self.pick(self.PROFESSIONS)
        if plural:
            de_pred, en_pred = (f + "nen" if female else m_pl), en_pl
        else:
            de_pred, en_pred = (f if female else m), ("an " if en[0] in "aeiou" else "a ") + en
        if en == "waiter" and female:
            en_pred = "waitresses" if plural else "a waitress"
        neg = self.chance(0.2)
        if neg:
            de_pred = ("keine " if plural or female else "kein ") + de_pred
        tense, time, front = self.random_tense_time(0.0)
        if tense == "fut":
            tense, time, front = "pres", None, False
        mode = "ynq" if not neg and self.chance(0.12) else "decl"
        return self.copula(subj, de_pred, en_pred, neg, tense, mode, time, front, nicht=False)

    AGE_SUBJECTS = ("Junge", "Mädchen", "Kind", "Baby", "Sohn", "Tochter", "Bruder", "Schwester",
                    "Hund", "Katze", "Pferd", "Pony", "Kaninchen", "Esel", "Kuh", "Vogel")

    def t_age(self) -> tuple[str, str]:
        if self.chance(0.3):
            subj = self.pronoun_np(PRONOUNS[:4]) if self.chance(0.5) else self.name_np()
        else:
            subj = self.np(NOUN_BY_DE[self.pick(self.AGE_SUBJECTS)], role="subj",
                           allow_plural=False, adj_p=0.0)
            if subj.det not in ("def", "poss", "dem"):
                subj = replace(subj, det="def")
        if self.chance(0.2):
            en = sentence(f"how old {BE_EN[subj.pidx]} {subj.en()}", "?")
            de = sentence(f"wie alt {SEIN[subj.pidx]} {subj.de('nom')}", "?")
            return en, de
        n = self.rng.randint(1 if subj.kind == "noun" else 3, 12)
        de_pred = "ein Jahr alt" if n == 1 else f"{NUM_DE[n]} Jahre alt"
        en_pred = f"{NUM_EN[n]} {'year' if n == 1 else 'years'} old"
        return self.copula(subj, de_pred, en_pred, False, "pres", "decl")

    def t_colour(self) -> tuple[str, str]:
        noun = self.noun(["thing", "clothing", "vehicle", "furniture", "container"])
        np = self.np(noun, role="subj", adj_p=0.0)
        if np.det not in ("def", "poss", "dem"):
            np = replace(np, det="def", num=0)
        if self.chance(0.5):
            en = sentence(f"what colour {'are' if np.plural else 'is'} {np.en()}", "?")
            de = sentence(f"welche Farbe {'haben' if np.plural else 'hat'} {np.de('nom')}", "?")
            return en, de
        adj = self.pick([a for a in ADJS if a.cat == "colour" and a.fits & noun.tags])
        return self.copula(np, adj.pred, adj.en, self.chance(0.15), "pres", "decl")

    def t_weather(self) -> tuple[str, str]:
        place = ("", "")
        if self.chance(0.2):
            city_de, city_en = self.pick(CITIES)
            place = (f"in {city_de}", f"in {city_en}")
        p_de, p_en = place
        tense, time, front = self.random_tense_time(0.4)
        t_de, t_en = time if time else ("", "")
        neg = self.chance(0.12)
        nicht = "nicht" if neg else ""
        if self.chance(0.45):
            de3, part, base, ing = self.pick([("regnet", "geregnet", "rain", "raining"),
                                              ("schneit", "geschneit", "snow", "snowing")])
            if tense == "past":
                fin, right = "hat", part
                en_vp = ["did not", base] if neg else [base + "ed"]
            else:
                fin, right = de3, ""
                if tense == "fut":
                    en_vp = ["will not" if neg else "will", base]
                else:
                    en_vp = ["is not" if neg else "is", ing]
            if front and time:
                de = de_words(t_de, fin, "es", nicht, p_de, right)
                en = de_words(t_en, "it", *en_vp, p_en)
            elif place[0] and self.chance(0.4):
                de = de_words(p_de, fin, "es", t_de, nicht, right)
                en = de_words(p_en, "it", *en_vp, t_en)
            else:
                de = de_words("es", fin, t_de, nicht, p_de, right)
                en = de_words("it", *en_vp, p_en, t_en)
            return sentence(en, "."), sentence(de, ".")
        if self.chance(0.25):
            adj_de, adj_en = self.pick([("schön", "nice"), ("schlecht", "bad"), ("gut", "good")])
            subj = NP("fixed", de_text="das Wetter", en_text="the weather")
        else:
            adj_de, adj_en = self.pick([("kalt", "cold"), ("warm", "warm"), ("heiß", "hot"),
                                        ("sonnig", "sunny"), ("windig", "windy"),
                                        ("kühl", "cool"), ("neblig", "foggy")])
            subj = NP("fixed", de_text="es", en_text="it")
        return self.copula(subj, de_words(p_de, adj_de), de_words(adj_en, p_en), neg, tense,
                           "decl", time, front)

    def t_name(self) -> tuple[str, str]:
        r = self.rng.random()
        if r < 0.2:
            de_p, en_p = self.pick([("du", "your"), ("er", "his"), ("sie", "her")])
            return sentence(f"what is {en_p} name", "?"), sentence(f"wie heißt {de_p}", "?")
        if r < 0.6:
            de, _, pidx, _, own_en = self.pick(PRONOUNS[:4])
            name = self.name_np({"er": "m", "sie": "f"}.get(de, "")).de_text
            form = ("heiße", "heißt", "heißt")[pidx]
            return (sentence(f"{own_en} name is {name}", "."),
                    sentence(f"{de} {form} {name}", "."))
        noun = NOUN_BY_DE[self.pick(("Hund", "Katze", "Pferd", "Pony", "Kaninchen", "Esel",
                                     *self.PROF_SUBJECTS))]
        gender = "m" if "male" in noun.tags else ("f" if "female" in noun.tags else "")
        subj = self.np(noun, role="subj", allow_plural=False, adj_p=0.1)
        if subj.det not in ("def", "poss", "dem"):
            subj = replace(subj, det="def")
        name = self.name_np(gender).de_text
        return (sentence(f"{subj.en()} is called {name}", "."),
                sentence(f"{subj.de('nom')} heißt {name}", "."))

    def t_was_macht(self) -> tuple[str, str]:
        subj = self.subject(frozenset({"person", "animal"}))
        pidx = subj.pidx
        machen = ("mache", "machst", "macht", "machen", "macht", "machen")[pidx]
        t_de, t_en = self.time_for("pres") if self.chance(0.3) else ("", "")
        en = de_words("what", BE_EN[pidx], subj.en(), "doing", t_en)
        de = de_words("was", machen, subj.de("nom"), t_de)
        return sentence(en, "?"), sentence(de, "?")

    def simple_clause(self, subj: NP | None = None, neg: bool = False) -> Clause:
        def fits(v: Verb) -> bool:
            if v.key in ("hängen", "gehören"):
                return False
            if subj is None:
                return True
            if (subj.kind in ("pron", "name") and not subj.ptags) or "adult" in subj.tags:
                return bool(v.subj & {"person", "adult"})
            return bool(v.subj & subj.tags)

        c = self.clause(self.pick_verb(fits), tense="pres", neg=neg, allow_front=False,
                        subj=subj, time_p=0.0)
        return replace(c, freq=None)

    def t_coord(self) -> tuple[str, str]:
        r = self.rng.random()
        c1 = self.simple_clause()
        if r < 0.4:
            c2 = self.simple_clause()
            if c2.subj.en() == c1.subj.en():
                return self.t_statement()
            de = f"{render_de(c1)} und {render_de(c2)}"
            en = f"{render_en(c1)} and {render_en(c2)}"
        elif r < 0.7:
            if self.chance(0.5):
                c2 = self.simple_clause(subj=c1.subj.pronoun(), neg=True)
            else:
                c2 = self.simple_clause(neg=self.chance(0.5))
            de = f"{render_de(c1)}, aber {render_de(c2)}"
            en = f"{render_en(c1)}, but {render_en(c2)}"
        else:
            c2 = self.simple_clause(subj=c1.subj.pronoun())
            while c2.verb.stative:
                c2 = self.simple_clause(subj=c1.subj.pronoun())
            c2 = replace(c2, front="dann")
            de = f"{render_de(c1)} und {render_de(c2)}"
            en = f"{render_en(c1)} and {render_en(c2)}"
        return sentence(en, "."), sentence(de, ".")

    REASONS = {
        "müde": ("schlafen", "einschlafen", "bleiben", "gehen_bed"),
        "hungrig": ("essen", "kochen", "backen"),
        "durstig": ("trinken",),
        "traurig": ("weinen",),
        "glücklich": ("lachen", "singen", "tanzen", "lächeln"),
        "krank": ("bleiben", "schlafen", "gehen_doc"),
        "regnet": ("bleiben", "fernsehen", "lesen", "nehmen_schirm"),
        "kalt": ("anziehen", "bleiben", "schließen"),
        "heiß": ("schwimmen", "öffnen", "trinken"),
    }

    def reason_clause(self, key: str, subj: NP) -> Clause:
        if key == "gehen_bed":
            pp = PP("dir", "in", "acc", NP("noun", NOUN_BY_DE["Bett"], "def"), "to")
            return Clause(subj, VERB_BY_KEY["gehen"], pps=(pp,))
        if key == "gehen_doc":
            pp = PP("dir", "zu", "dat", NP("noun", NOUN_BY_DE["Arzt"], "def"), "to")
            return Clause(subj, VERB_BY_KEY["gehen"], pps=(pp,))
        if key == "nehmen_schirm":
            obj = NP("noun", NOUN_BY_DE["Regenschirm"], "indef")
            return Clause(subj, VERB_BY_KEY["nehmen"], obj=obj)
        if key == "bleiben":
            home = PP("loc", fixed=("zu Hause", "at home"))
            return Clause(subj, VERB_BY_KEY["bleiben"], pps=(home,))
        v = VERB_BY_KEY[key]
        if key == "anziehen":
            obj = self.np(self.noun(["warm"]), owner=subj, allow_plural=False)
            return Clause(subj, v, obj=obj)
        if key in ("schließen", "öffnen"):
            return Clause(subj, v, obj=NP("noun", NOUN_BY_DE["Fenster"], "def"))
        c = self.clause(v, tense="pres", neg=False, allow_front=False, subj=subj, time_p=0.0)
        return replace(c, freq=None)

    def t_weil(self) -> tuple[str, str]:
        key = self.pick(sorted(self.REASONS))
        subj = self.subject(frozenset({"person"}))
        main = self.reason_clause(self.pick(self.REASONS[key]), subj)
        if key == "regnet":
            sub_de, sub_en = "weil es regnet", "because it is raining"
        elif key in ("kalt", "heiß"):
            adj = ADJ_BY_DE[key]
            sub_de, sub_en = f"weil es {adj.pred} ist", f"because it is {adj.en}"
        else:
            pron = subj.pronoun()
            adj = ADJ_BY_DE[key]
            sub_de = f"weil {pron.de('nom')} {adj.pred} {SEIN[pron.pidx]}"
            sub_en = f"because {pron.en()} {BE_EN[pron.pidx]} {adj.en}"
        de = f"{render_de(main)}, {sub_de}"
        en = f"{render_en(main)} {sub_en}"
        return sentence(en, "."), sentence(de, ".")

    def t_coord_subject(self) -> tuple[str, str]:
        """Two coordinated subjects with plural agreement ("Anna und ich gehen ...")."""
        first = self.subject(frozenset({"person"}), allow_pron=False)
        if self.chance(0.35):
            second = NP("pron", de_text="ich", en_text="I", p_idx=0)
            pidx, owner = 3, ("unser", "our")
        else:
            second = self.subject(frozenset({"person"}), allow_pron=False)
            if second.en() == first.en():
                return self.t_statement()
            pidx, owner = 5, ("ihr", "their")
        subj = NP("pron", de_text=f"{first.de('nom')} und {second.de('nom')}",
                  en_text=f"{first.en()} and {second.en()}", p_idx=pidx, owner_=owner)
        v = self.pick_verb(pred=lambda v: "person" in v.subj)
        c = self.clause(v, subj=subj)
        if c.tense == "gern" or c.front != "subj":
            c = replace(c, front="subj")
        return sentence(render_en(c), "."), sentence(render_de(c), ".")

    TEMPLATES: list[tuple[float, str]] = [
        (48, "t_statement"), (11, "t_question"), (4, "t_imperative"), (6, "t_copula_adj"),
        (4, "t_copula_loc"), (4, "t_es_gibt"), (2.5, "t_das_ist"), (2, "t_profession"),
        (1.2, "t_age"), (1.2, "t_colour"), (2, "t_weather"), (1, "t_name"),
        (0.8, "t_was_macht"), (5, "t_coord"), (3, "t_weil"), (2.5, "t_coord_subject"),
    ]

    def pair(self) -> tuple[str, str]:
        """One (English, German) sentence pair from a randomly chosen template."""
        method: Callable[[], tuple[str, str]] = getattr(self, self.weighted(self.TEMPLATES))
        return method()


# ---------------------------------------------------------------------------------------------
# Corpus assembly
# ---------------------------------------------------------------------------------------------


def build_corpus(seed: int, n_train: int, n_valid: int, n_test: int,
                 max_words: int = 16) -> dict[str, list[tuple[str, str]]]:
    """Generate unique pairs (no English or German sentence repeats anywhere) and split them."""
    gen = Generator(seed)
    total = n_train + n_valid + n_test
    pairs: list[tuple[str, str]] = []
    seen_en: set[str] = set()
    seen_de: set[str] = set()
    attempts = 0
    while len(pairs) < total:
        attempts += 1
        if attempts > total * 50:
            raise RuntimeError("grammar too small for the requested corpus size")
        en, de = gen.pair()
        if not 3 <= len(en.split()) <= max_words or not 3 <= len(de.split()) <= max_words:
            continue
        if en in seen_en or de in seen_de:
            continue
        seen_en.add(en)
        seen_de.add(de)
        pairs.append((en, de))
    return {
        "test": pairs[:n_test],
        "valid": pairs[n_test:n_test + n_valid],
        "train": pairs[n_test + n_valid:],
    }


def write_split(out: Path, name: str, pairs: list[tuple[str, str]]) -> None:
    for lang, idx in (("en", 0), ("de", 1)):
        text = "".join(p[idx] + "\n" for p in pairs)
        (out / f"{name}.{lang}").write_text(text, encoding="utf-8", newline="\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data"), help="output directory")
    parser.add_argument("--seed", type=int, default=1234, help="random seed")
    parser.add_argument("--train", type=int, default=20000, help="number of training pairs")
    parser.add_argument("--valid", type=int, default=500, help="number of validation pairs")
    parser.add_argument("--test", type=int, default=500, help="number of test pairs")
    parser.add_argument("--show", type=int, default=0,
                        help="print this many random training pairs for a spot check")
    args = parser.parse_args(argv)

    splits = build_corpus(args.seed, args.train, args.valid, args.test)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, pairs in splits.items():
        write_split(args.out, name, pairs)
        print(f"{name}: {len(pairs)} pairs")
    if args.show:
        rng = random.Random(args.seed + 1)
        for en, de in rng.sample(splits["train"], args.show):
            print(f"  EN: {en}\n  DE: {de}\n")


if __name__ == "__main__":
    main()
