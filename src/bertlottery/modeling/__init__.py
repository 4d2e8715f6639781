"""The model as a structure: load a classifier, find its layers/heads/MLPs by role, apply masks (soft, physical, weight), count sizes, and run it padding-free."""
