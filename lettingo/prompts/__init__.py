"""Prompts: the free-form profile-generation prompt and the recommender (f_Rec) prompts."""
