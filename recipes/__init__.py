"""The Hydra recipes, installed as the package `verl_maxpo.recipes` (setup.py maps this folder there).

Each folder is a package only so that Hydra can find it through `pkg://` from any working directory:
`pkg://verl_maxpo.recipes.shared` (the A/B base and the estimator arms) and `pkg://verl_maxpo.recipes.<folder>`.
"""
