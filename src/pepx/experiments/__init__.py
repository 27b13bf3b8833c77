"""The paper's experiment: profiles, the training grid (single split or K folds), ablations, leave-source-out,
recipe search, Tables 1-4, Figures 9-10 and `report.md`."""

from pepx.experiments.cv import reproduce_cv
from pepx.experiments.profiles import ABLATIONS, PROFILES, RECIPES, Profile, get_profile
from pepx.experiments.recipe import score_recipes
from pepx.experiments.reproduce import reproduce

__all__ = ["ABLATIONS", "PROFILES", "RECIPES", "Profile", "get_profile", "reproduce", "reproduce_cv",
           "score_recipes"]
