"""The real-data training recipe of the shipped weights (``python -m ldct_scripts.recipe.train_real_recipe``)."""
