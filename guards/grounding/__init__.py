"""The grounding guard: are an answer's claims supported by its sources, and do its citations hold?"""
