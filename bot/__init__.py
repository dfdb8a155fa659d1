"""The Rasa 3 project: domain, NLU data, stories, rules, custom actions, channel credentials."""
