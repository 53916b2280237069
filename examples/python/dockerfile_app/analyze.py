import pandas as pd

scores = pd.DataFrame({"name": ["ada", "bob", "cy"], "score": [3, 5, 7]})
print("mean score:", scores["score"].mean())
