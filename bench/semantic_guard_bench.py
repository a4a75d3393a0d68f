"""The semantic cache's guard: how many paraphrases still find each other's answer, and how many different
questions the embedding alone would confuse, with the real MiniLM int8 embedder.

    .venv/bin/python bench/semantic_guard_bench.py [--threshold 0.92] [--verbose]

A pair is served (the second prompt would get the first one's answer) when the two prompts' cosine is at
least the threshold, they share a semantic scope (`semantic_scope`: numbers, negations, days, ...) and the
neighbour is not the same words in another order (`reordered`). Paraphrases should be served, confusions
never. No bus, no index: the guard's decision for each pair, as `ResponseCache._find` makes it.
"""

from __future__ import annotations

import argparse

import numpy as np

from switchyard.common.embedding import model_files
from switchyard.common.embedding.embedder import Embedder
from switchyard.common.events import ChatRequest
from switchyard.gateway.cache.guard import framed, prompt_words, reordered
from switchyard.gateway.cache.models import semantic_scope

# An app's instructions inside the user turn, around each customer's message (a template's fills).
FRAME = (
    "You are a helpful assistant for an online shop. Read the customer's message below carefully and write "
    "a polite reply in the same language, no longer than three sentences, that thanks them, addresses their "
    "concern and, when relevant, points them to our help center. Customer message: "
)
# What the cache bench and the cache tests rely on, then everyday rewordings.
PARAPHRASES = [
    ("What is the capital of France?", "What's the capital city of France?"),
    ("How do I boil an egg?", "How can I boil an egg?"),
    ("Write a Python function to reverse a string", "Write a python function that reverses a string"),
    ("Explain what a hash table is.", "Explain what a hash table is, please."),
    ("What is the boiling point of water at sea level?", "At sea level, what is water's boiling point?"),
    ("What is 17 * 23?", "Compute 17 times 23"),
    ("Convert 1,000 USD to EUR", "convert 1000 usd to eur"),
    ("Don't use jargon: explain DNS", "Explain DNS, do not use jargon"),
    ("How do I reverse a list in Python?", "How can I reverse a list in Python?"),
    ("What is the tallest mountain in the world?", "Which mountain is the tallest in the world?"),
    ("Give me 5 ideas for a birthday party", "Give me five ideas for a birthday party"),
    ("How do I center a div in CSS?", "How can I center a div with CSS?"),
    ("What are the symptoms of the flu?", "What are flu symptoms?"),
    ("Summarize the plot of Hamlet", "Give me a summary of the plot of Hamlet"),
    ("Who wrote Pride and Prejudice?", "Who is the author of Pride and Prejudice?"),
    ("How many legs does a spider have?", "How many legs do spiders have?"),
    ("What is the speed of light?", "What's the speed of light?"),
    ("Explain recursion to me", "Can you explain recursion?"),
    ("How do I make pancakes?", "How to make pancakes?"),
    ("What does HTTP stand for?", "What is HTTP short for?"),
    (
        "What is the difference between a list and a tuple in Python?",
        "What's the difference between a Python list and a tuple?",
    ),
    ("How do I convert a string to an int in Python?", "How can I convert a string to an int in Python?"),
    ("Convert miles to kilometers", "Convert miles into kilometers"),
    ("Translate 'good morning' into French", "Translate 'good morning' to French"),
    ("Is Python faster than Java?", "Is Python quicker than Java?"),
    ("What should I eat before a workout?", "What should I eat before working out?"),
    ("Is coffee bad for you?", "Is coffee bad for your health?"),
    (
        "What are the pros and cons of remote work?",
        "What are the advantages and disadvantages of remote work?",
    ),
    ("How old is the universe?", "What is the age of the universe?"),
    ("Which is the largest planet?", "What is the largest planet?"),
    ("Is it safe to eat raw eggs?", "Is eating raw eggs safe?"),
    ("Is it not safe to eat raw chicken?", "Is it unsafe to eat raw chicken?"),
    ("Write a haiku about autumn", "Write a haiku about the autumn"),
    ("How do I sort a dictionary by value in Python?", "How to sort a dict by value in Python?"),
    ("What is the best way to learn Spanish?", "What's the best way to learn Spanish?"),
    ("Recommend a good book about history", "Recommend a good history book"),
    # held out: written after the rules were, to check them
    ("How do I install Docker on Ubuntu?", "How can I install Docker on Ubuntu?"),
    ("What is the population of Tokyo?", "How many people live in Tokyo?"),
    ("Explain the theory of relativity simply", "Explain relativity in simple terms"),
    ("How do I make a cup of tea?", "How to make a cup of tea"),
    ("What is the meaning of life?", "What's the meaning of life?"),
    ("Write a SQL query to find duplicate rows", "Write an SQL query that finds duplicate rows"),
    ("What is the largest ocean on Earth?", "Which ocean is the largest on Earth?"),
    ("How can I improve my sleep?", "How do I improve my sleep?"),
    ("What are the health benefits of green tea?", "What health benefits does green tea have?"),
    ("Tell me a joke about programmers", "Tell me a programmer joke"),
    ("How do I set up a Python virtual environment?", "How to set up a virtual environment in Python?"),
    ("Why is the sky blue?", "Why is the sky blue in color?"),
    ("What is the best way to learn to code?", "What's the best way to learn coding?"),
    ("How many days are in a leap year?", "How many days does a leap year have?"),
    ("Convert this JSON to YAML", "Convert this JSON into YAML"),
    ("What is faster, a cheetah or a lion?", "Which is faster, a cheetah or a lion?"),
    ("What is 5+3?", "What's 5 + 3?"),
    ("Is the sentence 'She go to school' correct?", "Is 'She go to school' a correct sentence?"),
    # the same fill of a frame, reworded in words that name nothing
    (FRAME + "Where is my parcel?", FRAME + "Where's my parcel?"),
    (FRAME + "Can you please cancel my subscription?", FRAME + "Could you cancel my subscription?"),
]

# Different questions the embedding alone finds close (the round-2 review's, then more of each family).
CONFUSIONS = [
    ("How much older is Alice than Bob?", "How much younger is Alice than Bob?"),
    ("Is this movie suitable for adults?", "Is this movie suitable for children?"),
    ("Is this game appropriate for adults?", "Is this game appropriate for kids?"),
    ("What should I eat before a workout?", "What should I eat after a workout?"),
    ("Convert kilometers into miles", "Convert miles to kilometers"),
    ("How do I convert a list into a string?", "How do I convert a string to a list?"),
    ("Translate from English to German: good morning", "Translate into English from German: good morning"),
    ("How many kilometers are in a mile?", "How many miles are in a kilometer?"),
    ("Is Python faster than Java?", "Is Python slower than Java?"),
    ("Is Python faster than Java?", "Is Java quicker than Python?"),
    ("Is Rust safer than Go?", "Is Rust riskier than Go?"),
    ("Is it cheaper to fly or drive?", "Is it more expensive to fly or drive?"),
    ("What is the second largest planet?", "What is the largest planet?"),
    ("Give me five ideas for a party", "Give me ten ideas for a party"),
    ("Sort a list in ascending order in Python", "Sort a list in descending order in Python"),
    ("Should I buy Tesla stock?", "Should I sell Tesla stock?"),
    ("Is coffee good for you?", "Is coffee bad for you?"),
    ("How to make my code run faster", "How to make my code run slower"),
    ("What are the advantages of remote work?", "What are the disadvantages of remote work?"),
    ("What are the pros of nuclear power?", "What are the cons of nuclear power?"),
    ("Is it better to rent or buy?", "Is it worse to rent or buy?"),
    ("Who won the 2018 world cup?", "Who lost the 2018 world cup?"),
    ("Summarize the article in three sentences", "Summarize the article in five sentences"),
    ("What is the minimum wage in California?", "What is the maximum wage in California?"),
    ("Explain quantum computing for beginners", "Explain quantum computing for experts"),
    ("What happens when you heat ice?", "What happens when you cool ice?"),
    ("How do I upload a file to S3?", "How do I download a file from S3?"),
    ("How to encrypt a file with gpg", "How to decrypt a file with gpg"),
    ("Give me a recipe for men", "Give me a recipe for women"),
    ("Is it legal to record a phone call?", "Is it illegal to record a phone call?"),
    ("What is the first day of the week?", "What is the last day of the week?"),
    ("Is it safe to eat raw eggs?", "Is it dangerous to eat raw eggs?"),
    ("How do I increase my credit score?", "How do I decrease my credit score?"),
    (
        "What is the time complexity of inserting into a heap?",
        "What is the time complexity of deleting from a heap?",
    ),
    # held out: written after the rules were, to check them
    ("Is a cheetah faster than a lion?", "Is a lion faster than a cheetah?"),
    ("Convert YAML to JSON", "Convert JSON into YAML"),
    ("How many ounces in a pound?", "How many pounds in an ounce?"),
    ("What foods raise blood sugar?", "What foods lower blood sugar?"),
    ("Is the dollar stronger than the euro?", "Is the dollar weaker than the euro?"),
    ("How to gain weight fast", "How to lose weight fast"),
    ("Symptoms of high blood pressure", "Symptoms of low blood pressure"),
    ("Books for teenagers", "Books for adults"),
    ("What to wear in hot weather", "What to wear in cold weather"),
    ("Show the most recent commits", "Show the oldest commits"),
    ("What is the opposite of love?", "What is the opposite of hate?"),
    ("Why do cats purr when happy?", "Why do cats purr when sad?"),
    ("What is 3 feet in meters?", "What is 3 meters in feet?"),
    ("Write a positive review of this phone", "Write a negative review of this phone"),
    ("Is it healthy to skip breakfast?", "Is it unhealthy to skip breakfast?"),
    ("Explain how to merge two git branches", "Explain how to split a git branch in two"),
    ("What vitamins should I take in the morning?", "What vitamins should I take at night?"),
    ("Arguments for universal basic income", "Arguments against universal basic income"),
    # two customers' messages in one frame
    (FRAME + "Please cancel my subscription.", FRAME + "Please renew my subscription."),
    (FRAME + "Please send my parcel to London.", FRAME + "Please send my parcel to Paris."),
    (FRAME + "Where is my parcel for order A?", FRAME + "Where is my parcel for order B?"),
    (FRAME + "My order arrived broken, the glass is shattered.", FRAME + "My parcel is late, it is a gift."),
    # operators, quoted text and code
    ("Is 7 > 3?", "Is 7 < 3?"),
    ("Fix the bug in: def f(x): return x+1", "Fix the bug in: def f(x): return x-1"),
    ("Solve x + 5 = 12", "Solve x - 5 = 12"),
    ("What is 17 plus 23?", "What is 17 minus 23?"),
    ("Is the sentence 'She go to school' correct?", "Is the sentence 'She goes to school' correct?"),
    ("Explain `git reset --hard`", "Explain `git reset --soft`"),
]


def served(embedder: Embedder, one: str, other: str, threshold: float) -> tuple[bool, float, str]:
    vectors = embedder.embed([one, other]).vectors
    cosine = float(np.dot(vectors[0], vectors[1]))
    ask = lambda text: ChatRequest.model_validate({"messages": [{"role": "user", "content": text}]})  # noqa: E731
    if semantic_scope("acme", ask(one)) != semantic_scope("acme", ask(other)):
        return False, cosine, "scope"
    if reordered(prompt_words(one), prompt_words(other)):
        return False, cosine, "reordered"
    if framed(prompt_words(one), prompt_words(other)):
        return False, cosine, "framed"
    return cosine >= threshold, cosine, "" if cosine >= threshold else "far"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threshold", type=float, default=0.92)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    files = model_files.find()
    embedder = Embedder(files.int8, files.tokenizer)
    for name, pairs, wanted in (("paraphrases", PARAPHRASES, True), ("confusions", CONFUSIONS, False)):
        outcomes = [(pair, *served(embedder, *pair, args.threshold)) for pair in pairs]
        count = sum(1 for _, hit, _, _ in outcomes if hit)
        print(f"{name}: {count}/{len(pairs)} served at threshold {args.threshold}")
        for (one, other), hit, cosine, why in outcomes:
            if args.verbose or hit != wanted:
                print(f"  {'served' if hit else 'miss  '} {cosine:.3f} {why or '':<9} {one!r} ~ {other!r}")


if __name__ == "__main__":
    main()
