"""Regenerate examples/jobs.jsonl (OpenAI Batch form) and examples/plain.jsonl (plain form).

The texts below were written for costserve's examples. Run: python examples/build_examples.py
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).parent

PASSAGES = [
    "The city council voted 7-2 on Tuesday to convert two downtown parking garages into housing. The plan adds about 340 apartments, a fifth of them priced for households earning under 60 percent of the area median income. Opponents argued that shops on Market Street depend on the garages; supporters pointed to a parking study showing both garages were less than half full on weekdays. Construction could begin next spring if the state approves a zoning waiver.",
    "Our quarterly revenue rose 12 percent to $48.2 million, driven by subscription renewals in the healthcare segment. Gross margin slipped from 71 to 68 percent because of higher cloud hosting costs, which we expect to fall after migrating our analytics workloads in the third quarter. We ended the period with $120 million in cash and no debt, and we are raising full-year guidance to between $195 and $200 million.",
    "I bought this espresso machine after my old one died. It heats up in about 30 seconds, the steam wand is powerful enough for proper microfoam, and the drip tray is easy to remove. The downside is the water tank: it holds only one liter and sits at the back, so refilling means pulling the whole machine out from under the cabinet. For the price it is still the best I have owned.",
    "Hi team, a reminder that the office will be closed on Friday for the building's electrical inspection. Please take your laptops home on Thursday evening and make sure anything in the fridge is cleared out. The VPN will stay up, and the support line forwards to the on-call phone as usual. If you need access to the server room that day, talk to Priya before Wednesday.",
    "Ticket #4471: After upgrading to version 3.2, the export button in the reports page does nothing. No error appears in the UI, but the browser console shows a 413 response from /api/export when the report has more than 5,000 rows. Smaller reports export fine. This is blocking our month-end close; we need a workaround by the 28th.",
    "Photosynthesis in most plants happens in two stages. In the light-dependent reactions, chlorophyll in the thylakoid membranes absorbs light and uses its energy to split water, releasing oxygen and producing ATP and NADPH. In the Calvin cycle, which takes place in the stroma, the plant uses that ATP and NADPH to fix carbon dioxide into three-carbon sugars that are later assembled into glucose and starch.",
    "The hiking trail to Alder Falls is 6.4 kilometres round trip with about 300 metres of elevation gain. The first half follows an old logging road and is wide and gentle; the second half climbs steeply over roots and loose rock. The falls are at their best in May and June. Dogs are allowed on a leash, there is no drinking water along the route, and the parking lot fills by 9 a.m. on summer weekends.",
    "Patient is a 54-year-old man presenting with three days of productive cough, fever of 38.6 C and right-sided chest pain on deep breathing. He has a history of type 2 diabetes controlled with metformin. Chest X-ray shows consolidation in the right lower lobe. Oxygen saturation is 94 percent on room air. Started on oral amoxicillin with a follow-up visit in 48 hours.",
    "The new firmware changes how the thermostat schedules heating. Instead of fixed times, it learns how long the house takes to warm up and starts early enough to reach the target temperature at the scheduled time. Users who prefer the old behaviour can turn off Adaptive Start in Settings > Schedule. The update also fixes a bug where the display stayed lit all night.",
    "Dear Ms. Okafor, thank you for your application for the data engineer position. We were impressed by your experience building streaming pipelines at Northwind. We would like to invite you to a 45-minute technical interview with two members of the platform team on either March 4 or March 6. Please reply with your preferred date and any accessibility needs.",
    "The Treaty of Westphalia, signed in 1648, ended the Thirty Years' War in the Holy Roman Empire and the Eighty Years' War between Spain and the Dutch Republic. It is often cited as the origin of the modern system of sovereign states, because it recognised the right of rulers to decide the religion of their territories and limited outside interference, although historians debate how new those principles really were.",
    "Our Kubernetes cluster ran out of IP addresses last night. The node pool autoscaled to 60 nodes during the batch job, but the subnet is a /24, so pods on the last nodes stayed in ContainerCreating with 'failed to assign an IP address'. Short term we capped the pool at 45 nodes. Long term we need a larger secondary range for pods or to switch to prefix delegation.",
    "The recipe serves four. Toast 200 grams of pearl barley in olive oil, then add a chopped onion, two cloves of garlic and a litre of vegetable stock, adding it a ladle at a time as for risotto. After 35 minutes stir in roasted squash, a handful of grated parmesan and some sage fried in butter. It keeps for three days in the fridge and reheats well with a splash of water.",
    "Starting in July, employees can work remotely up to three days a week after completing their probation period. Teams must agree on at least one shared office day. Remote work from another country is limited to 20 working days per year and requires approval from HR because of tax and insurance rules. Equipment for home offices can be claimed up to $600 every two years.",
    "The bridge inspection found corrosion on 14 of the 96 steel bearings and cracking in two expansion joints on the eastbound side. None of the defects is an immediate safety risk, but the engineers recommend lowering the weight limit for trucks from 40 to 32 tonnes until repairs are finished. Repairs are estimated at $3.1 million and would close one lane for about four months.",
    "The museum's new exhibition brings together 80 prints by Japanese woodblock artists from the 18th and 19th centuries, including several impressions of Hokusai's Great Wave that show how the blocks wore down over time. Because the prints are sensitive to light, the galleries are kept dim and the works will be rotated halfway through the show's five-month run.",
    "I have been a customer for six years and this is the first time I am writing to complain. My last two deliveries arrived a day late and one box was crushed, with two of the six glass jars broken. The replacement you promised on the phone never arrived. I would like either a refund for the broken items or a replacement shipped with tracking.",
    "Large language models generate text one token at a time. During prefill the model processes the whole prompt in parallel, which is limited by compute; during decode it produces one token per step for each sequence, which is limited by how fast the weights and the key-value cache can be read from memory. Batching many sequences together lets the decode phase reuse each weight read for many tokens.",
    "The school board approved a later start time for the district's three high schools, moving the first bell from 7:30 to 8:25 beginning next school year. The change follows a survey in which 68 percent of parents supported later starts. Bus routes will be redrawn over the summer, and after-school sports practices will run until 6 p.m. instead of 5.",
    "The sourdough starter needs feeding twice a day at room temperature: discard all but 50 grams, then add 50 grams of flour and 50 grams of water. It is ready to bake with when it doubles within four to six hours and smells pleasantly sour. If you bake only on weekends, keep it in the fridge and feed it once a week, giving it two room-temperature feedings before baking.",
    "Rainfall this winter was 40 percent below average across the basin, and the snowpack on April 1 held about half its usual water content. Reservoirs are at 62 percent of capacity. The water district is asking households to cut outdoor watering to two days a week and has paused new permits for ornamental lawns. Farmers with junior water rights may receive only a fraction of their allocation.",
    "In version 2.0 of the API, pagination moves from page numbers to cursors. Each list response includes a next_cursor field; pass it as the cursor query parameter to fetch the next page, and stop when it is null. Page-number requests will keep working until December 31, after which they return HTTP 410. Rate limits are unchanged at 600 requests per minute per key.",
    "The startup makes sensors that clip onto existing water pipes and listen for the sound of leaks. A machine-learning model running on the device distinguishes leaks from normal water use and alerts the building manager's phone. The company says its pilot with three hotel chains found leaks in 11 percent of monitored buildings, and it has raised $14 million to expand to apartment complexes.",
    "Volunteers counted 212 species during the annual bird count, four more than last year. Highlights included a pair of bald eagles nesting near the reservoir and the first recorded sighting of a painted bunting in the county. Counts of house sparrows and starlings fell for the third year in a row, while wild turkey numbers continued to climb.",
    "The contractor will replace the roof of the community centre between June 3 and June 28. Work will take place on weekdays from 7 a.m. to 4 p.m. The main hall stays open, but the east entrance and the parking spaces beside it will be closed. Groups that book the small meeting rooms should expect some noise in the mornings and may move to the library free of charge.",
    "Mutation testing measures how good a test suite is by making small changes to the code, such as flipping a comparison or deleting a line, and checking whether any test fails. A change that no test notices is a surviving mutant and points to behaviour the tests do not check. The score is the share of mutants killed; it is slower to compute than line coverage but much harder to game.",
    "The train operator will run a reduced timetable on the coastal line from 14 to 22 September while engineers replace a section of track near Harbour Point. Trains between Westgate and Harbour Point will be replaced by buses, adding about 25 minutes to journeys. Tickets will be valid on the buses, and bicycles can be carried only on the first and last bus of the day.",
    "Our analysis of 1,200 support tickets found that 38 percent concerned password resets and account lockouts, 22 percent billing questions, 17 percent integrations with third-party tools, and the rest a long tail of feature requests and bug reports. Median time to first response was 3.4 hours, but billing tickets waited more than twice as long because they need a specialist.",
    "The sonnet is a fourteen-line poem, usually in iambic pentameter. The Petrarchan form divides into an octave and a sestet, with a turn in argument or mood between them, while the Shakespearean form uses three quatrains and a closing couplet that often resolves or twists what came before. Poets from Wordsworth to Edna St. Vincent Millay used the form to compress an argument into a small space.",
    "The warehouse robot fleet completed 1.8 million picks in November with a 99.7 percent accuracy rate. Downtime rose to 4 percent, mostly because of battery swaps during the holiday peak. We propose adding twelve charging docks near the packing stations so robots can top up during idle periods instead of driving to the charging room, which we estimate will cut downtime in half.",
]

SUMMARY_TASKS = [
    "Summarise the following text in one sentence:\n\n{p}",
    "Write a three-bullet summary of this text for a busy reader:\n\n{p}",
    "Summarise the key facts and figures in the text below in no more than 50 words.\n\n{p}",
]
CLASSIFY_TASKS = [
    "Classify the following text into one of these categories: news, business, review, email, support ticket, science, travel, medical, technology, history, food, policy, other. Answer with the category only.\n\n{p}",
    "What is the overall sentiment of this text: positive, negative, neutral or mixed? Answer with one word, then one sentence of justification.\n\n{p}",
]
EXTRACT_TASKS = [
    "Extract every number in the text below with what it measures, as a JSON list of objects with keys \"value\" and \"meaning\".\n\n{p}",
    "List the people, organisations, places and dates mentioned in this text as JSON with keys people, organisations, places, dates.\n\n{p}",
]
QA_ON_PASSAGE = [
    ("What is the main problem or decision described?", 0),
    ("What happens next, according to the text?", 1),
    ("Who is affected and how?", 2),
]

QUESTIONS = [
    "What is the difference between a process and a thread?",
    "Explain in two sentences why the sky is blue.",
    "How does a hash table handle collisions?",
    "What causes the seasons on Earth?",
    "Give three tips for writing a clear commit message.",
    "What is the time complexity of binary search, and why?",
    "Why do bread doughs need to rest before shaping?",
    "Explain what a p-value is to someone without a statistics background.",
    "What is the capital of Australia, and why was it chosen?",
    "How do vaccines train the immune system?",
    "What is the difference between TCP and UDP?",
    "Write a haiku about a server that never sleeps.",
    "Translate into French: 'The meeting has been moved to Thursday afternoon.'",
    "Translate into Spanish: 'Please keep your receipt for returns within 30 days.'",
    "What are the main differences between SQL and NoSQL databases?",
    "Why does ice float on water?",
    "Suggest a name for a bakery that specialises in rye bread.",
    "Explain the idea of opportunity cost with an everyday example.",
    "What is quantization in machine learning, in plain words?",
    "How should I store fresh herbs so they last longer?",
    "Write a short, friendly reminder email about an overdue library book.",
    "What is the Pythagorean theorem? Give an example with numbers.",
    "Explain recursion using the example of Russian nesting dolls.",
    "List five questions to ask when interviewing for a software job.",
    "What is inflation, and how do central banks try to control it?",
    "Why are leaves green in summer and red or yellow in autumn?",
    "Write a Python function that checks whether a string is a palindrome.",
    "Write a SQL query that returns the ten customers with the highest total order value from tables customers(id, name) and orders(id, customer_id, amount).",
    "What does a load balancer do?",
    "Explain the difference between weather and climate.",
    "How many minutes are there in a week? Show your working.",
    "Give me a packing list for a two-day hike in the mountains.",
    "What is the difference between an interpreter and a compiler?",
    "Why do we have leap years?",
    "Describe the water cycle in four steps.",
    "What are the pros and cons of electric cars for someone who lives in an apartment?",
    "Write a limerick about a cat who learns to code.",
    "What is a mutex and when would you use one?",
    "Explain what GPU memory bandwidth is and why it matters for language models.",
    "Rewrite this sentence to be more polite: 'Send me the report now.'",
    "What are three common causes of a slow website?",
    "How do noise-cancelling headphones work?",
    "Give a one-paragraph history of the printing press.",
    "What is the difference between median and mean? When is the median better?",
    "Write a regular expression that matches a US ZIP code, with or without the four-digit extension.",
    "Why is it a bad idea to store passwords in plain text?",
    "Plan a simple vegetarian dinner menu for six people.",
    "What does 'idempotent' mean for an HTTP API?",
    "Explain what a spot instance is in cloud computing and when it is a good fit.",
    "What is the boiling point of water at the top of Mount Everest, roughly, and why is it lower?",
]

CHATS = [
    [("system", "You are a concise assistant for a bike shop."), ("user", "My rear brake squeals when it's wet. Is that dangerous?")],
    [("system", "You are a helpful travel planner."), ("user", "I have three days in Lisbon in October. What should I not miss?")],
    [("user", "I'm learning Go. How do I read a file line by line?"), ("assistant", "Use bufio.Scanner over an os.File."), ("user", "Can you show a complete example with error handling?")],
    [("system", "You answer as a patient math tutor."), ("user", "Why is dividing by zero undefined?")],
    [("user", "Help me write a toast for my sister's wedding. She loves sailing and terrible puns.")],
    [("system", "You are a customer support agent for a streaming service."), ("user", "I was charged twice this month. What can I do?")],
    [("user", "What's a good beginner houseplant for a dark room?"), ("assistant", "A ZZ plant or a snake plant tolerates low light well."), ("user", "How often should I water the ZZ plant?")],
    [("system", "You are a senior engineer doing code review. Be direct."), ("user", "Is it fine to catch Exception everywhere in a Python web app so it never crashes?")],
    [("user", "Explain the rules of chess castling briefly.")],
    [("system", "You are a nutrition coach. You do not give medical advice."), ("user", "What's a quick high-protein breakfast without eggs?")],
    [("user", "I need a name for my fantasy novel's river city built on stilts. Give me five options with one-line descriptions.")],
    [("system", "You are an SQL expert."), ("user", "What's the difference between WHERE and HAVING?"), ("assistant", "WHERE filters rows before grouping; HAVING filters groups after aggregation."), ("user", "Give an example where you need both.")],
    [("user", "My team argues about tabs versus spaces. Summarise both sides fairly in a few sentences.")],
    [("system", "You write release notes for end users, avoiding jargon."), ("user", "Changes: fixed crash on login with SSO; export to CSV now includes custom fields; dark mode contrast improved.")],
    [("user", "Can you suggest a 20-minute bodyweight workout I can do in a hotel room?")],
    [("system", "You help people prepare for job interviews."), ("user", "How do I answer 'what is your biggest weakness' honestly?")],
    [("user", "Write a bedtime story of about 150 words about a lighthouse keeper and a lost seal.")],
    [("system", "You are a Linux administrator."), ("user", "The disk on my server is full. How do I find what's using the space?")],
    [("user", "Compare renting and buying a home in three short bullet points each.")],
    [("system", "You are a friendly language tutor for Italian."), ("user", "How do I order a coffee politely in Italian?"), ("assistant", "You can say: 'Un caffè, per favore.'"), ("user", "And how do I ask for the bill?")],
]

MAX_TOKENS = [16, 32, 64, 96, 128, 200, 256, 400, 512]


def batch_line(custom_id: str, messages: list[tuple[str, str]] | None, prompt: str | None, max_tokens: int, i: int) -> dict:
    body: dict = {"model": "SmolLM2-135M", "max_tokens": max_tokens}
    if i % 5 == 0:
        body["temperature"] = 0.0
    elif i % 5 == 1:
        body.update(temperature=0.7, top_p=0.9, seed=i)
    if messages is not None:
        body["messages"] = [{"role": r, "content": c} for r, c in messages]
        url = "/v1/chat/completions"
    else:
        body["prompt"] = prompt
        url = "/v1/completions"
        if i % 7 == 0:
            body["stop"] = ["\n\n"]
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": body}


def main() -> None:
    lines: list[dict] = []
    n = 0

    def add(kind: str, messages=None, prompt=None, max_tokens=128) -> None:
        nonlocal n
        lines.append(batch_line(f"{kind}-{n:04d}", messages, prompt, max_tokens, n))
        n += 1

    for k, p in enumerate(PASSAGES):
        add("summary", messages=[("user", SUMMARY_TASKS[k % 3].format(p=p))], max_tokens=[64, 128, 96][k % 3])
        add("classify", prompt=CLASSIFY_TASKS[k % 2].format(p=p) + "\n\nAnswer:", max_tokens=[8, 48][k % 2])
        add("extract", messages=[("system", "You reply with valid JSON only."), ("user", EXTRACT_TASKS[k % 2].format(p=p))], max_tokens=256)
        question, _ = QA_ON_PASSAGE[k % 3]
        add("qa", messages=[("user", f"Read the text and answer the question.\n\nText: {p}\n\nQuestion: {question}")], max_tokens=MAX_TOKENS[k % len(MAX_TOKENS)])
    for k, q in enumerate(QUESTIONS):
        if k % 2:
            add("question", prompt=f"Question: {q}\nAnswer:", max_tokens=MAX_TOKENS[k % len(MAX_TOKENS)])
        else:
            add("question", messages=[("user", q)], max_tokens=MAX_TOKENS[(k * 3) % len(MAX_TOKENS)])
    for k, chat in enumerate(CHATS):
        add("chat", messages=chat, max_tokens=[200, 300, 512, 128][k % 4])
    # Long-context jobs: several passages in one prompt (compute-heavy prefill).
    for k in range(10):
        docs = "\n\n".join(f"Document {j + 1}:\n{PASSAGES[(k * 3 + j) % len(PASSAGES)]}" for j in range(3 + k % 4))
        add("digest", messages=[("user", f"Here are several documents.\n\n{docs}\n\nWrite a digest with one bullet per document, then say which document is the most urgent and why.")], max_tokens=400)

    with open(HERE / "jobs.jsonl", "w", encoding="utf-8") as f:
        for line in lines:
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
    with open(HERE / "plain.jsonl", "w", encoding="utf-8") as f:
        for k, q in enumerate(QUESTIONS[:20]):
            f.write(json.dumps({"id": f"q{k + 1}", "prompt": f"Question: {q}\nAnswer:", "max_tokens": MAX_TOKENS[k % len(MAX_TOKENS)]}) + "\n")
    print(f"wrote {len(lines)} jobs to jobs.jsonl and 20 to plain.jsonl")


if __name__ == "__main__":
    main()
