"""The paper's experiment: profiles, the training grid, Tables 1-4, Figures 9-10 and `report.md`."""

from pepx.experiments.profiles import PROFILES, Profile, get_profile
from pepx.experiments.reproduce import reproduce

__all__ = ["PROFILES", "Profile", "get_profile", "reproduce"]
