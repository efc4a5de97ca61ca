"""What generated documents hold: vendors, people, items, titles, chart labels and units, and the
seeded values drawn from them (dates in six styles, invoice numbers, amounts). pagegen lays them out;
the curriculum's line pages draw from them too."""
from __future__ import annotations

import random

VENDOR_A = ["Acme", "Northwind", "Blue River", "Summit", "Redwood", "Silverline", "Greenfield", "Lakeside",
             "Brightstar", "Oakridge", "Ironbridge", "Westbrook", "Harbor", "Pinecrest", "Maple", "Cobalt",
             "Evergreen", "Falcon", "Horizon", "Keystone", "Riverside", "Sunrise", "Atlas", "Nordic"]
VENDOR_B = ["Supplies", "Trading", "Logistics", "Industries", "Systems", "Consulting", "Print", "Office",
             "Foods", "Electric", "Partners", "Services", "Tools", "Media"]
VENDOR_C = ["Ltd", "Inc.", "GmbH", "LLC", "Co.", "", "", ""]
FIRST = ["Anna", "Ben", "Clara", "David", "Elena", "Frank", "Grace", "Hugo", "Ines", "Jonas", "Karin", "Leo",
          "Maria", "Nils", "Olga", "Paul", "Rita", "Sam", "Tina", "Victor"]
LAST = ["Meyer", "Smith", "Garcia", "Novak", "Rossi", "Becker", "Jensen", "Kowalski", "Martin", "Silva",
         "Fischer", "Brown", "Dubois", "Larsen", "Weber", "Moreau"]
ITEMS = ["Paper A4", "Toner cartridge", "Delivery", "Consulting", "Office chairs", "USB cables",
          "Printer service", "Coffee beans", "Desk lamp", "Monitor stand", "Software license", "Cleaning",
          "Travel costs", "Labels", "Envelopes", "Training", "Maintenance", "Web hosting", "Repairs",
          "Shipping", "Notebooks", "Design work", "Catering", "Storage"]
PERIOD = ["Annual", "Quarterly", "Monthly", "Weekly", "Interim", "Final", "Q1", "Q2", "Q3", "Q4"]
TOPIC = ["Sales", "Marketing", "Safety", "Budget", "Project", "Research", "Operations", "Staff",
          "Customer", "Energy", "Audit", "Quality", "Supply"]
KIND = ["Report", "Review", "Summary", "Update", "Plan", "Proposal", "Minutes", "Overview"]
LETTERS = ["Letter of Intent", "Letter of Offer", "Notice of Meeting", "Letter of Thanks", "Notice of Change",
            "Letter of Support", "Welcome Letter", "Price Notice"]
WORDS = ("the of and to in for on with as by this that from at are was will our new all each we it has "
          "team plan data cost work year month part time price order level total group report office "
          "market review next early final change result growth client member project budget service").split()
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"]
METRIC = ["Revenue", "Sales", "Costs", "Visitors", "Orders", "Profit", "Downloads", "Exports", "Output"]
DIMS = {"region": ["North", "South", "East", "West", "Central"], "quarter": ["Q1", "Q2", "Q3", "Q4"],
         "year": [str(y) for y in range(2018, 2026)], "product": ["Alpha", "Beta", "Gamma", "Delta", "Omega", "Sigma"],
         "month": [m[:3] for m in MONTHS], "team": ["Red", "Blue", "Green", "Gold", "Gray"],
         "country": ["France", "Spain", "Italy", "Japan", "Brazil", "Canada", "India", "Kenya", "Peru"]}
UNITS = ["%", "million EUR", "USD", "units", "tonnes", "thousand", None, None]
CURRENCY = [("$", "prefix", "USD"), ("EUR", "suffix", "EUR"), ("£", "prefix", "GBP"), ("GBP", "prefix", "GBP")]


def money(x: float) -> str:
    return f"{x:,.2f}"


def number(x: float) -> int | float:
    """A JSON number as the reader writes it: 2 decimals at most, integers without '.0'."""
    x = round(x, 2)
    return int(x) if x == int(x) else x


def date(rng: random.Random) -> str:
    y, m, d = rng.randint(2018, 2026), rng.randint(1, 12), rng.randint(1, 28)
    style = rng.randrange(6)
    return [f"{y}-{m:02d}-{d:02d}", f"{d} {MONTHS[m - 1][:3]} {y}", f"{MONTHS[m - 1]} {d}, {y}",
            f"{d:02d}/{m:02d}/{y}", f"{d:02d}.{m:02d}.{y}", f"{d} {MONTHS[m - 1]} {y}"][style]


def name(rng: random.Random) -> str:
    return f"{rng.choice(FIRST)} {rng.choice(LAST)}"


def invoice_number(rng: random.Random) -> str:
    digits = lambda n: "".join(rng.choice("0123456789") for _ in range(n))  # noqa: E731
    letters = lambda n: "".join(rng.choice("ABCDEFGHKLMNPRSTUVWXYZ") for _ in range(n))  # noqa: E731
    return [f"INV-{digits(rng.randint(4, 5))}", f"INV-{rng.randint(2018, 2026)}-{digits(4)}", digits(rng.randint(5, 6)),
            f"{letters(1)}-{digits(4)}", f"{letters(2)}{digits(5)}"][rng.randrange(5)]
