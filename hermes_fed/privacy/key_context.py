"""JSON keys as context: ``{"phone": "555 0100"}`` is a phone number even though the value
alone is too short to be one, and ``{"password": "hunter2"}`` is a password whatever it
looks like.

:func:`context_entity` maps a key (normalised: lower case, letters and digits only) and its
string value to the entity type the *whole* value should be redacted as, or None.
"""

from __future__ import annotations

import re

from hermes_fed.privacy.pii_recognizers import lenient_phone
from hermes_fed.privacy.placeholders import PLACEHOLDER_RE

_NON_ALNUM = re.compile(r"[^a-z0-9]")
_PASSWORD_KEYS = ("password", "passwd", "passphrase", "pwd")
_SECRET_SUFFIXES = (
    "token", "secret", "apikey", "privatekey", "accesskey", "secretkey", "authorization",
    "credential", "credentials", "sessionid", "cookie", "authkey",
)
_PHONE_KEYS = frozenset({
    "phone", "phonenumber", "mobile", "mobilenumber", "cell", "cellphone", "tel",
    "telephone", "fax", "contactphone", "homephone", "workphone",
})
_SSN_KEYS = frozenset({"ssn", "socialsecuritynumber", "socialsecurity", "taxid"})
_EMAIL_KEYS = frozenset({"email", "emailaddress", "mail", "contactemail"})
_PERSON_KEYS = frozenset({
    "fullname", "firstname", "lastname", "surname", "givenname", "familyname",
    "customername", "contactname", "displayname", "patientname", "employeename",
})
#: Keys that hold a person only when the value is written like a name ({"name": "refund"}
#: is a tool, {"assignee": "Ana Lima"} a person).
_MAYBE_PERSON_KEYS = frozenset({
    "name", "customer", "contact", "assignee", "assignedto", "owner", "author", "reporter",
    "recipient", "recipientname", "sender", "sendername", "requester", "requestedby",
    "approver", "approvedby", "signer", "signedby", "manager", "employee", "patient", "user",
    "username", "member", "attendee", "attendees", "participant", "participants", "guest",
    "passenger", "driver", "reviewer", "reviewers", "createdby", "updatedby", "toname",
    "fromname", "cc", "to", "from", "person", "people", "agent", "nickname", "preferredname",
})
_ADDRESS_KEYS = frozenset({
    "address", "streetaddress", "street", "homeaddress", "billingaddress",
    "shippingaddress", "postaladdress", "addressline1", "addressline2", "shipto",
    "deliveryaddress", "mailingaddress", "residentialaddress",
})
_SSN_VALUE = re.compile(r"\d{3}[\s.\-]?\d{2}[\s.\-]?\d{4}")
_AWS_SECRET_VALUE = re.compile(r"[A-Za-z0-9/+]{40}")

#: Types for which a key's verdict replaces whatever the recognizers found in the value.
WHOLE_VALUE_TYPES = frozenset({
    "PASSWORD", "AWS_SECRET_KEY", "PHONE_NUMBER", "US_SSN", "EMAIL_ADDRESS", "PERSON",
    "LOCATION", "STREET_ADDRESS",
})


def normalise_key(key: str) -> str:
    return _NON_ALNUM.sub("", key.lower())


def context_entity(key: str | None, value: str, *, names: bool = True) -> str | None:
    """Entity type of the whole ``value`` given its JSON ``key``, or None; ``names`` allows
    keys that hold a person only when the value looks like a name (``assignee``)."""
    if key is None:
        return None
    stripped = value.strip()
    if not stripped or PLACEHOLDER_RE.sub("", stripped).strip() == "":
        return None
    k = normalise_key(key)
    if not k:
        return None
    if "secretaccesskey" in k or k == "awssecretkey":
        return "AWS_SECRET_KEY" if _AWS_SECRET_VALUE.fullmatch(stripped) else "SECRET"
    if any(p in k for p in _PASSWORD_KEYS):
        return "PASSWORD"
    if k in _PHONE_KEYS or k.endswith("phone"):
        return "PHONE_NUMBER" if lenient_phone(stripped) else None
    if k in _SSN_KEYS:
        return "US_SSN" if _SSN_VALUE.fullmatch(stripped) else None
    if k in _EMAIL_KEYS:
        return "EMAIL_ADDRESS" if "@" in stripped else None
    if k in _PERSON_KEYS:
        return "PERSON"
    if k in _ADDRESS_KEYS:
        return "STREET_ADDRESS"
    if names and k in _MAYBE_PERSON_KEYS:
        from hermes_fed.privacy.name_recognizer import looks_like_name

        return "PERSON" if looks_like_name(stripped) else None
    if k.endswith(_SECRET_SUFFIXES) and len(stripped) >= 6 and not stripped.isdigit():
        return "SECRET"
    return None


def numeric_context_entity(key: str | None, value: int) -> str | None:
    """Numbers under phone/SSN/card keys are personal too (``{"phone": 4155550100}``)."""
    if key is None:
        return None
    k = normalise_key(key)
    digits = str(abs(value))
    if (k in _PHONE_KEYS or k.endswith("phone")) and 7 <= len(digits) <= 16:
        return "PHONE_NUMBER"
    if k in _SSN_KEYS and len(digits) == 9:
        return "US_SSN"
    if k in {"card", "cardnumber", "creditcard", "ccnumber", "pan"} and 12 <= len(digits) <= 19:
        return "CREDIT_CARD"
    return None
