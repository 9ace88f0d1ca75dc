"""The privacy policy: which attributes the sanitized faces must hide and which they must keep.

A policy names CelebA attributes (`Male`, `Young`, `Smiling`, ...; the names of the attribute
file's header) plus `identity`:
- `suppress`: what an automated classifier must no longer read from the sanitized face;
- `preserve`: what must survive (`identity`: face matching still works; an attribute: a classifier
  still reads it as on the original).

Presets (`--policy NAME`): `gender` (the default, today's product), `gender-age`, `age`,
`deidentify` (suppress identity, keep Smiling, Eyeglasses, Male, Young: FaDeNet), `obfuscate`
(suppress identity, keep nothing: DDM's encryption, reversible by whoever holds the model). Explicit
`--suppress` / `--preserve` override a preset's lists. The policy is checked against the data's
attribute header before anything runs, recorded in the exported model's metadata, in ML Metadata
and by the bulk job (job.json, manifest).
"""

from __future__ import annotations

from dataclasses import dataclass

IDENTITY = "identity"
GENDER = "Male"

# name -> (suppress, preserve)
PRESETS = {
    "gender": ((GENDER,), (IDENTITY,)),
    "gender-age": ((GENDER, "Young"), (IDENTITY, "Smiling")),
    "age": (("Young",), (IDENTITY, GENDER)),
    # De-identification (FaDeNet): automated face matching fails, the attributes stay.
    "deidentify": ((IDENTITY,), ("Smiling", "Eyeglasses", GENDER, "Young")),
    # Obfuscation (distribution discrepancy maximisation, DDM): the face is encrypted into an image
    # far from every original face; nothing is kept but the image format (and, for whoever holds
    # the model, the face itself: a second pass of the model decrypts).
    "obfuscate": ((IDENTITY,), ()),
}
DEFAULT_PRESET = "gender"

MAX_SUPPRESSED = 8  # one target bit per suppressed attribute from a face's fingerprint (trainer/export.py)


class PolicyError(ValueError):
    """A policy that names an unknown attribute, names one twice, or that the data cannot support."""


def split_names(text: str | None) -> tuple[str, ...]:
    """'Male, Young' -> ('Male', 'Young'); None or '' -> ()."""
    return tuple(name.strip() for name in (text or "").split(",") if name.strip())


@dataclass(frozen=True)
class PrivacyPolicy:
    suppress: tuple = PRESETS[DEFAULT_PRESET][0]
    preserve: tuple = PRESETS[DEFAULT_PRESET][1]

    @classmethod
    def from_arguments(cls, preset: str | None = None, suppress: str | None = None,
                       preserve: str | None = None) -> "PrivacyPolicy":
        """The CLI's --policy / --suppress / --preserve: the preset (default 'gender'), with either
        list replaced where given."""
        name = preset or DEFAULT_PRESET
        if name not in PRESETS:
            raise PolicyError(f"--policy {name!r} is not a preset: choose one of {', '.join(PRESETS)}, or give "
                              "--suppress and --preserve")
        base_suppress, base_preserve = PRESETS[name]
        return cls(split_names(suppress) if suppress is not None else base_suppress,
                   split_names(preserve) if preserve is not None else base_preserve)

    @classmethod
    def from_dict(cls, values: dict | None) -> "PrivacyPolicy":
        """From metadata or a custom_config (lists after a JSON round trip); None -> the default."""
        if not values:
            return cls()
        return cls(tuple(values.get("suppress", ())), tuple(values.get("preserve", ())))

    def to_dict(self) -> dict:
        return {"name": self.name, "suppress": list(self.suppress), "preserve": list(self.preserve)}

    @property
    def name(self) -> str:
        """The preset this policy equals, or 'custom'."""
        for name, (suppress, preserve) in PRESETS.items():
            if set(self.suppress) == set(suppress) and set(self.preserve) == set(preserve):
                return name
        return "custom"

    @property
    def attributes(self) -> tuple:
        """The CelebA attributes the policy names (suppressed first), without `identity`."""
        return tuple(name for name in (*self.suppress, *self.preserve) if name != IDENTITY)

    @property
    def other_attributes(self) -> tuple:
        """`attributes` besides gender (Male has its own classifier and judges): what the auxiliary
        attribute classifier reads, in its head order, and what gets judges of its own."""
        return tuple(name for name in self.attributes if name != GENDER)

    @property
    def suppressed_attributes(self) -> tuple:
        """The suppressed attributes, without `identity` (what the online adversary reads)."""
        return tuple(name for name in self.attributes if name in self.suppress)

    @property
    def other_suppressed(self) -> tuple:
        """The suppressed attributes besides gender."""
        return tuple(name for name in self.other_attributes if name in self.suppress)

    def check_names(self, attribute_names) -> None:
        """Refuses, naming the culprit: an empty suppress list, a name that is neither `identity`
        nor an attribute of `attribute_names` (the data's header), a name given twice or both
        suppressed and preserved."""
        known = list(attribute_names)
        if not self.suppress:
            raise PolicyError("the privacy policy suppresses nothing: give at least one attribute to --suppress "
                              f"(e.g. --suppress {GENDER})")
        for flag, names in (("--suppress", self.suppress), ("--preserve", self.preserve)):
            for name in names:
                if name != IDENTITY and name not in known:
                    near = [k for k in known if k.lower() == name.lower()]
                    hint = (f" (did you mean {near[0]!r}? names are case-sensitive)" if near else
                            f"; the data's attributes are: {', '.join(known)}, plus {IDENTITY!r}")
                    raise PolicyError(f"{flag} {name!r}: unknown attribute{hint}")
            twice = sorted({name for name in names if names.count(name) > 1})
            if twice:
                raise PolicyError(f"{flag} names {', '.join(twice)} more than once")
        both = sorted(set(self.suppress) & set(self.preserve))
        if both:
            raise PolicyError(f"{', '.join(both)} is both suppressed and preserved: a sanitizer cannot hide and keep "
                              "the same attribute; remove it from --suppress or from --preserve")

    def check_trainable(self, architecture: str) -> None:
        """Refuses, before any training, a policy the chosen sanitizer cannot be trained for."""
        if len(self.suppress) > MAX_SUPPRESSED:
            raise PolicyError(f"privacy policy {self.describe()}: at most {MAX_SUPPRESSED} attributes can be suppressed")
        if architecture == "paper" and self.name != "gender":
            raise PolicyError(f"--architecture paper hides gender only (its prototypes are the mean male and "
                              f"female faces); policy {self.describe()} needs --architecture residual")

    @property
    def suppresses_identity(self) -> bool:
        """De-identification: face matching must fail on the sanitized faces."""
        return IDENTITY in self.suppress

    @property
    def obfuscates(self) -> bool:
        """Identity alone suppressed and nothing kept (`obfuscate`): trained with the DDM scheme
        (encryption and decryption by the same network, a discriminator shared objective) instead of
        the FaDeNet terms, which keep appearance and the preserved attributes."""
        return set(self.suppress) == {IDENTITY} and not self.preserve

    def describe(self) -> str:
        return (f"'{self.name}' (suppress {', '.join(self.suppress) or 'nothing'}; "
                f"preserve {', '.join(self.preserve) or 'nothing'})")
