"""Tool-calling training files in the layouts tenants really have, generated at scale.

The fixtures in ``tests/fixtures`` hold a few hand-written rows of each layout; a
deployment needs hundreds, of realistic length. These generators write:

* :func:`hermes_rows`: NousResearch *hermes-function-calling-v1* rows — ``id``,
  ``conversations`` (system/human/gpt/tool), ``tools`` as a JSON string (sometimes Python-
  literal, as some rows have), ``category``/``subcategory``/``task``. The system turn is
  the canonical prompt: "within <tools></tools> XML tags", then the real ``<tools>`` block
  holding the full schemas (as a JSON or a Python-literal list), then the ``<tool_call>``
  instructions; calls are ``<tool_call>`` blocks, results ``<tool_response>`` blocks with
  a ``name`` and a JSON ``content``; some rows continue with a second request.
* :func:`openai_rows`: OpenAI fine-tuning rows with ``tools``, ``tool_calls`` (arguments as
  a JSON string), ``tool_call_id`` and ``weight: 0`` on an answer kept only as context.

Lengths are what such data has: one or two full schemas, written in the system prompt
and (as the chat template renders ``tools``) again in the tools section, put the first
assistant token of a Hermes row past 512 tokens of the packaged base's tokenizer, and a
whole row with its tool results runs to about a thousand (see
``tests/e2e/test_deploy_for_real.py``). Seeded: the same seed writes the same bytes.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SYSTEM_HEAD = ("You are a function calling AI model. You are provided with function "
               "signatures within <tools></tools> XML tags. You may call one or more functions "
               "to assist with the user query. Don't make assumptions about what values to plug "
               "into functions.")
SYSTEM_TAIL = ("For each function call return a json object with function name and arguments "
               "within <tool_call></tool_call> XML tags as follows:\n<tool_call>\n"
               "{'arguments': <args-dict>, 'name': <function-name>}\n</tool_call>\n")


def _fn(name: str, description: str, properties: dict[str, Any],
        required: list[str]) -> dict[str, Any]:
    return {"type": "function", "function": {
        "name": name, "description": description,
        "parameters": {"type": "object", "properties": properties, "required": required}}}


def _s(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **extra}


@dataclass(frozen=True)
class Domain:
    """One kind of agent work: its tools and a generator of (request, call, result, answer)."""

    category: str
    subcategory: str
    task: str
    tools: list[dict[str, Any]]
    make: Callable[[random.Random], tuple[str, str, dict[str, Any], dict[str, Any], str]]


CITIES = ["Lisbon", "Osaka", "Toronto", "Nairobi", "Santiago", "Oslo", "Hanoi", "Denver",
          "Krakow", "Adelaide", "Porto", "Montreal", "Seville", "Utrecht", "Bergen"]
TICKERS = ["AAPL", "MSFT", "NVDA", "SAP", "ASML", "TSLA", "AMZN", "NFLX", "ADBE", "ORCL"]
AIRPORTS = ["SFO", "JFK", "LHR", "CDG", "NRT", "YYZ", "AMS", "FRA", "MAD", "SYD", "GRU", "DXB"]


def _weather(rng: random.Random) -> tuple[str, str, dict[str, Any], dict[str, Any], str]:
    city, days = rng.choice(CITIES), rng.randint(2, 5)
    unit = rng.choice(["celsius", "fahrenheit"])
    forecast = [{"day": d + 1, "high": rng.randint(8, 31), "low": rng.randint(-3, 15),
                 "conditions": rng.choice(["sunny", "light rain", "overcast", "showers",
                                           "partly cloudy", "windy"]),
                 "precipitation_mm": round(rng.uniform(0, 12), 1)} for d in range(days)]
    request = (f"I'm travelling to {city} next week. Can you get me the {days}-day forecast in "
               f"{unit}? I need to know whether to pack a rain jacket.")
    rainy = [f["day"] for f in forecast if f["precipitation_mm"] > 3]
    answer = (f"Here is the {days}-day forecast for {city}: " + "; ".join(
        f"day {f['day']}: {f['conditions']}, {f['low']}-{f['high']} degrees" for f in forecast)
        + (f". Rain is likely on day {', '.join(map(str, rainy))}, so pack the rain jacket."
           if rainy else ". Little rain is expected; the jacket can stay home."))
    return (request, "get_weather_forecast", {"location": city, "days": days, "unit": unit},
            {"location": city, "unit": unit, "forecast": forecast}, answer)


def _stocks(rng: random.Random) -> tuple[str, str, dict[str, Any], dict[str, Any], str]:
    ticker = rng.choice(TICKERS)
    price = round(rng.uniform(40, 900), 2)
    change = round(rng.uniform(-4, 4), 2)
    request = (f"What is {ticker} trading at right now, and how much did it move today? "
               "Also show me the day's range.")
    result = {"symbol": ticker, "price": price, "currency": "USD", "change_percent": change,
              "day_low": round(price * 0.98, 2), "day_high": round(price * 1.015, 2),
              "volume": rng.randint(1_000_000, 90_000_000), "exchange": "NASDAQ"}
    answer = (f"{ticker} is trading at {price} USD, {'up' if change >= 0 else 'down'} "
              f"{abs(change)}% today, in a range of {result['day_low']} to "
              f"{result['day_high']} on a volume of {result['volume']:,} shares.")
    return request, "get_stock_quote", {"symbol": ticker}, result, answer


def _flights(rng: random.Random) -> tuple[str, str, dict[str, Any], dict[str, Any], str]:
    origin, destination = rng.sample(AIRPORTS, 2)
    date = f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    flights = [{"flight_id": f"{rng.choice(['UA', 'LH', 'AF', 'NH', 'BA'])}{rng.randint(100, 999)}",
                "departs": f"{rng.randint(5, 22):02d}:{rng.choice(['05', '20', '35', '50'])}",
                "duration_min": rng.randint(90, 780), "stops": rng.choice([0, 0, 1]),
                "price_usd": round(rng.uniform(120, 1400), 2)} for _ in range(rng.randint(2, 4))]
    cheapest = min(flights, key=lambda f: f["price_usd"])
    request = (f"Find me a one-way flight from {origin} to {destination} on {date}. I prefer "
               "nonstop if the price difference is small.")
    answer = (f"I found {len(flights)} flights from {origin} to {destination} on {date}. The "
              f"cheapest is {cheapest['flight_id']} at {cheapest['departs']} for "
              f"{cheapest['price_usd']} USD ({'nonstop' if cheapest['stops'] == 0 else 'one stop'}"
              f", {cheapest['duration_min']} minutes). Shall I book it?")
    return (request, "search_flights", {"origin": origin, "destination": destination,
                                        "date": date},
            {"origin": origin, "destination": destination, "date": date, "flights": flights},
            answer)


def _orders(rng: random.Random) -> tuple[str, str, dict[str, Any], dict[str, Any], str]:
    order = str(rng.randint(10000, 99999))
    status = rng.choice(["shipped", "processing", "delivered", "delayed"])
    carrier = rng.choice(["DHL", "UPS", "FedEx", "PostNL"])
    eta = f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    items = [{"sku": f"SKU-{rng.randint(1000, 9999)}", "quantity": rng.randint(1, 3),
              "unit_price_eur": round(rng.uniform(5, 240), 2)} for _ in range(rng.randint(1, 3))]
    request = f"Where is my order {order}? It was supposed to arrive already."
    result = {"order_id": order, "status": status, "carrier": carrier, "eta": eta,
              "items": items, "tracking_events": rng.randint(2, 9)}
    answer = (f"Order {order} is {status} with {carrier}; the expected delivery date is {eta}. "
              f"It holds {len(items)} item{'s' if len(items) > 1 else ''}.")
    return request, "get_order_status", {"order_id": order}, result, answer


def _calendar(rng: random.Random) -> tuple[str, str, dict[str, Any], dict[str, Any], str]:
    day = f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    minutes = rng.choice([30, 45, 60, 90])
    slots = [f"{h:02d}:{m}" for h, m in sorted({(rng.randint(8, 17), rng.choice(["00", "30"]))
                                                for _ in range(rng.randint(2, 5))})]
    request = (f"Find a free {minutes}-minute slot on {day} for a design review with the "
               "platform team, preferably in the afternoon.")
    result = {"date": day, "duration_minutes": minutes, "free_slots": slots,
              "timezone": rng.choice(["Europe/Lisbon", "America/Toronto", "Asia/Tokyo"])}
    afternoon = [s for s in slots if s >= "12:00"]
    pick = afternoon[0] if afternoon else slots[0]
    answer = (f"On {day} there are {len(slots)} free {minutes}-minute slots ({', '.join(slots)},"
              f" {result['timezone']}). I suggest {pick}; shall I send the invitation?")
    return (request, "find_free_slots", {"date": day, "duration_minutes": minutes},
            result, answer)


def _currency(rng: random.Random) -> tuple[str, str, dict[str, Any], dict[str, Any], str]:
    base, quote = rng.sample(["USD", "EUR", "JPY", "GBP", "CAD", "CHF", "NOK"], 2)
    amount = rng.choice([50, 120, 300, 1000, 2500])
    rate = round(rng.uniform(0.5, 160), 4)
    request = f"How much is {amount} {base} in {quote} at today's rate?"
    result = {"from": base, "to": quote, "rate": rate, "amount": amount,
              "converted": round(amount * rate, 2), "as_of": "2025-03-14T09:00:00Z"}
    answer = (f"{amount} {base} is {result['converted']} {quote} at today's rate of {rate} "
              f"(as of 09:00 UTC).")
    return request, "convert_currency", {"amount": amount, "from": base, "to": quote}, result, answer


DOMAINS = [
    Domain("Weather", "Forecasts", "Get a multi-day weather forecast for a city", [
        _fn("get_weather_forecast", "Get the daily weather forecast for a location",
            {"location": _s("City name, e.g. Lisbon"),
             "days": {"type": "integer", "description": "Number of days, 1-7", "minimum": 1,
                      "maximum": 7},
             "unit": _s("Temperature unit", enum=["celsius", "fahrenheit"])},
            ["location", "days"]),
        _fn("get_air_quality", "Get the current air quality index of a location",
            {"location": _s("City name")}, ["location"]),
        _fn("get_sunrise_sunset", "Sunrise and sunset times of a location on a date",
            {"location": _s("City name"), "date": _s("ISO date", format="date")},
            ["location", "date"])], _weather),
    Domain("Stocks and Orders", "Stock Price Queries", "Retrieve the current stock price", [
        _fn("get_stock_quote", "Get the latest quote of a stock: price, change, range, volume",
            {"symbol": _s("The stock symbol, e.g. AAPL")}, ["symbol"]),
        _fn("get_company_profile", "Company profile: sector, employees, headquarters",
            {"symbol": _s("The stock symbol")}, ["symbol"]),
        _fn("place_order", "Place a buy or sell order for a stock",
            {"symbol": _s("The stock symbol"), "side": _s("buy or sell", enum=["buy", "sell"]),
             "quantity": {"type": "integer", "minimum": 1},
             "limit_price": {"type": "number", "description": "Limit price in USD"}},
            ["symbol", "side", "quantity"])], _stocks),
    Domain("Travel", "Flight Search", "Search one-way flights between two airports", [
        _fn("search_flights", "Search one-way flights between two airports on a date",
            {"origin": _s("IATA code of the departure airport"),
             "destination": _s("IATA code of the arrival airport"),
             "date": _s("Departure date", format="date"),
             "max_stops": {"type": "integer", "minimum": 0, "maximum": 2}},
            ["origin", "destination", "date"]),
        _fn("book_flight", "Book a flight and charge the card on file",
            {"flight_id": _s("Flight id from search_flights"),
             "passengers": {"type": "integer", "minimum": 1}}, ["flight_id", "passengers"]),
        _fn("get_baggage_policy", "Baggage allowance of an airline",
            {"airline": _s("Two-letter airline code")}, ["airline"])], _flights),
    Domain("E-commerce", "Order Tracking", "Look up the status of an order", [
        _fn("get_order_status", "Status of an order by its id: carrier, items, delivery date",
            {"order_id": _s("The order id")}, ["order_id"]),
        _fn("refund_order", "Refund an order to the original payment method",
            {"order_id": _s("The order id"), "reason": _s("Why the customer wants a refund")},
            ["order_id"]),
        _fn("update_shipping_address", "Change the delivery address of an order not shipped yet",
            {"order_id": _s("The order id"), "address": _s("The new address")},
            ["order_id", "address"])], _orders),
    Domain("Productivity", "Scheduling", "Find a free meeting slot in a calendar", [
        _fn("find_free_slots", "Free slots of the user's calendar on a date",
            {"date": _s("ISO date", format="date"),
             "duration_minutes": {"type": "integer", "minimum": 15, "maximum": 240}},
            ["date", "duration_minutes"]),
        _fn("create_event", "Create a calendar event and invite attendees",
            {"title": _s("Event title"), "start": _s("ISO datetime"),
             "duration_minutes": {"type": "integer"},
             "attendees": {"type": "array", "items": _s("Attendee email")}},
            ["title", "start", "duration_minutes"])], _calendar),
    Domain("Finance", "Currency Conversion", "Convert an amount between currencies", [
        _fn("convert_currency", "Convert an amount between two currencies at today's rate",
            {"amount": {"type": "number", "description": "Amount to convert"},
             "from": _s("ISO 4217 code of the source currency"),
             "to": _s("ISO 4217 code of the target currency")}, ["amount", "from", "to"]),
        _fn("get_rate_history", "Daily exchange rates of a currency pair",
            {"from": _s("ISO 4217 code"), "to": _s("ISO 4217 code"),
             "days": {"type": "integer", "minimum": 1, "maximum": 90}},
            ["from", "to", "days"])], _currency),
]


def _offered(domain: Domain, called: str, rng: random.Random) -> list[dict[str, Any]]:
    """The tools a row offers: the one it calls, and sometimes one more of its domain."""
    tools = [t for t in domain.tools if t["function"]["name"] == called]
    others = [t for t in domain.tools if t["function"]["name"] != called]
    if others and rng.random() < 0.25:
        tools.append(rng.choice(others))
    return tools


def _literal(value: Any) -> str:
    """Python-literal text of a JSON value, as some NousResearch rows write schemas."""
    return repr(value)


def hermes_rows(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` rows of hermes-function-calling-v1 (module docstring)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        domain = DOMAINS[i % len(DOMAINS)]
        request, name, args, result, answer = domain.make(rng)
        tools = _offered(domain, name, rng)
        literal = rng.random() < 0.3
        tools_text = _literal(tools) if literal else json.dumps(tools)
        system = f"{SYSTEM_HEAD}\n<tools>\n{tools_text}\n</tools>\n{SYSTEM_TAIL}"
        call = ({"arguments": args, "name": name})
        call_text = _literal(call) if literal else json.dumps(call)
        conversations = [
            {"from": "system", "value": system},
            {"from": "human", "value": request},
            {"from": "gpt", "value": f"<tool_call>\n{call_text}\n</tool_call>"},
            {"from": "tool", "value": "<tool_response>\n" + json.dumps(
                {"name": name, "content": result}) + "\n</tool_response>"},
            {"from": "gpt", "value": answer},
        ]
        if rng.random() < 0.35:  # a second request in the same conversation
            request2, name2, args2, result2, answer2 = domain.make(rng)
            conversations += [
                {"from": "human", "value": "Thanks. One more: " + request2[0].lower()
                 + request2[1:]},
                {"from": "gpt", "value": "<tool_call>\n" + json.dumps(
                    {"arguments": args2, "name": name2}) + "\n</tool_call>"},
                {"from": "tool", "value": "<tool_response>\n" + json.dumps(
                    {"name": name2, "content": result2}) + "\n</tool_response>"},
                {"from": "gpt", "value": answer2},
            ]
        rows.append({"id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                     "conversations": conversations,
                     "tools": _literal(tools) if rng.random() < 0.2 else json.dumps(tools),
                     "category": domain.category, "subcategory": domain.subcategory,
                     "task": domain.task})
    return rows


OPENAI_SYSTEM = ("You are the assistant of a travel and shopping service. Use the tools to look "
                 "things up; never invent prices, times or order states. Answer in one short "
                 "paragraph.")


def openai_rows(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` OpenAI fine-tuning rows with tools; about one in five keeps a weight-0 answer
    (a first, wrong reply) as context before the trained one."""
    rng = random.Random(seed + 1)
    rows = []
    for i in range(n):
        domain = DOMAINS[(i * 5 + 1) % len(DOMAINS)]
        request, name, args, result, answer = domain.make(rng)
        call_id = f"call_{rng.getrandbits(40):010x}"
        messages: list[dict[str, Any]] = [{"role": "system", "content": OPENAI_SYSTEM},
                                          {"role": "user", "content": request}]
        if rng.random() < 0.2:
            messages += [{"role": "assistant", "content": "Let me guess: it should be fine.",
                          "weight": 0},
                         {"role": "user", "content": "Please actually look it up."}]
        messages += [
            {"role": "assistant", "content": None, "weight": 1, "tool_calls": [
                {"id": call_id, "type": "function",
                 "function": {"name": name, "arguments": json.dumps(args)}}]},
            {"role": "tool", "tool_call_id": call_id, "content": json.dumps(result)},
            {"role": "assistant", "content": answer, "weight": 1},
        ]
        rows.append({"messages": messages, "tools": _offered(domain, name, rng),
                     "parallel_tool_calls": False})
    return rows


def write_jsonl(path: Any, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
