// Issue 17 items 6 and 7: images and charts in code-interpreter results,
// through the official @e2b/code-interpreter SDK. A PIL image gives a PNG
// result (last expression, display(), Image.show()); a matplotlib figure
// gives Result.chart as E2B's extractor (e2b-charts) makes it, typed in the
// SDK as ChartTypes.
//
// SANDPIT_INTERP_TEMPLATE picks the template (default: the SDK's own,
// code-interpreter-v1).
import assert from 'node:assert/strict'
import { before, describe, test } from 'node:test'
import { Sandbox } from '@e2b/code-interpreter'
import { track, useServer } from './harness.mjs'

const server = useServer()
const template = process.env.SANDPIT_INTERP_TEMPLATE

/** Width and height from a PNG's IHDR chunk. */
function pngSize(b64) {
  const buf = Buffer.from(b64, 'base64')
  assert.equal(buf.subarray(1, 4).toString('latin1'), 'PNG', 'not a PNG')
  assert.equal(buf.subarray(12, 16).toString('latin1'), 'IHDR')
  return { width: buf.readUInt32BE(16), height: buf.readUInt32BE(20) }
}

/** @type {Sandbox} */
let sbx

/**
 * Runs code and returns the one result with a chart, which must also carry
 * the figure's PNG.
 * @returns {Promise<import('@e2b/code-interpreter').ChartTypes>}
 */
async function chartOf(code) {
  const r = await sbx.runCode(code)
  assert.equal(r.error, undefined, `error: ${JSON.stringify(r.error)}`)
  assert.deepEqual(r.logs.stderr, [], 'the extractor wrote to stderr')
  const withChart = r.results.filter((x) => x.chart)
  assert.equal(withChart.length, 1, `results: ${JSON.stringify(r.results.map((x) => Object.keys(x.raw)))}`)
  assert.ok(withChart[0].png, 'a chart result has the PNG too')
  return withChart[0].chart
}

const isNumber = (v) => typeof v === 'number'
const isString = (v) => typeof v === 'string'

describe('results of the Python kernel', () => {
  before(async () => {
    sbx = track(server, template ? await Sandbox.create(template) : await Sandbox.create())
  })

  describe('images', () => {
    before(async () => {
      const r = await sbx.runCode("from PIL import Image\nimg = Image.new('RGB', (48, 20), (0, 128, 255))")
      assert.equal(r.error, undefined, `PIL: ${JSON.stringify(r.error)}`)
    })

    for (const [how, code, main] of [
      ['as the last expression', 'img', true],
      ['through display()', 'display(img)', false],
      ['through Image.show()', 'img.show()', false],
    ]) {
      test(`a PIL image ${how} is a PNG result`, async () => {
        const r = await sbx.runCode(code)
        assert.equal(r.error, undefined)
        assert.equal(r.results.length, 1, `results: ${JSON.stringify(r.results.map((x) => x.formats()))}`)
        const [res] = r.results
        assert.equal(res.isMainResult, main)
        assert.ok(res.formats().includes('png'), `formats: ${res.formats()}`)
        assert.deepEqual(pngSize(res.png), { width: 48, height: 20 })
      })
    }
  })

  describe('charts', () => {
    test('line chart with a datetime x axis, units from the labels', async () => {
      const chart = await chartOf(`
  import datetime
  import numpy as np
  import matplotlib.pyplot as plt
  t0 = datetime.datetime(2024, 3, 1)
  times = [t0 + datetime.timedelta(minutes=i) for i in range(60)]
  plt.figure(figsize=(8, 4))
  plt.plot(times, np.sin(np.linspace(0, 6, 60)), label='load')
  plt.plot(times, np.cos(np.linspace(0, 6, 60)), label='temp')
  plt.xlabel('Time (min)')
  plt.ylabel('Value [kW]')
  plt.title('Two series')
  plt.show()
  `)
      assert.equal(chart.type, 'line')
      assert.equal(chart.title, 'Two series')
      assert.equal(chart.x_label, 'Time (min)')
      assert.equal(chart.y_label, 'Value [kW]')
      assert.equal(chart.x_unit, 'min')
      assert.equal(chart.y_unit, 'kW')
      assert.equal(chart.x_scale, 'datetime')
      assert.equal(chart.y_scale, 'linear')
      assert.ok(chart.x_ticks.length > 0 && chart.x_ticks.every(isString), `x_ticks ${chart.x_ticks}`)
      assert.ok(chart.x_ticks.every((t) => !Number.isNaN(Date.parse(t))), `x_ticks ${chart.x_ticks}`)
      assert.ok(chart.y_ticks.length > 0 && chart.y_ticks.every(isNumber), `y_ticks ${chart.y_ticks}`)
      assert.equal(chart.x_tick_labels.length, chart.x_ticks.length)
      assert.ok(chart.x_tick_labels.every(isString) && chart.y_tick_labels.every(isString))
      assert.deepEqual(chart.elements.map((e) => e.label), ['load', 'temp'])
      for (const line of chart.elements) {
        assert.equal(line.points.length, 60)
        assert.ok(line.points.every(([x, y]) => isString(x) && isNumber(y)))
      }
      const [first] = chart.elements
      assert.equal(new Date(first.points[0][0]).getTime(), new Date('2024-03-01T00:00:00Z').getTime())
      assert.equal(first.points[0][1], 0)
      assert.equal(new Date(first.points[59][0]).getTime(), new Date('2024-03-01T00:59:00Z').getTime())
    })

    test('log scale', async () => {
      const chart = await chartOf(`
  import matplotlib.pyplot as plt
  plt.plot([1, 2, 3, 4], [10, 100, 1000, 10000])
  plt.yscale('log')
  plt.show()
  `)
      assert.equal(chart.type, 'line')
      assert.equal(chart.x_scale, 'linear')
      assert.equal(chart.y_scale, 'log')
      assert.ok(chart.y_ticks.every(isNumber))
      // A line without a label gets E2B's name for it.
      assert.deepEqual(chart.elements, [{ label: 'Line 0', points: [[1, 10], [2, 100], [3, 1000], [4, 10000]] }])
    })

    test('categorical scale', async () => {
      const chart = await chartOf(`
  import matplotlib.pyplot as plt
  plt.plot([1, 2, 3], ['low', 'mid', 'high'])
  plt.show()
  `)
      assert.equal(chart.type, 'line')
      assert.equal(chart.x_scale, 'linear')
      assert.equal(chart.y_scale, 'categorical')
      assert.deepEqual(chart.y_ticks, [0, 1, 2])
      assert.deepEqual(chart.y_tick_labels, ['low', 'mid', 'high'])
      assert.deepEqual(chart.elements[0].points, [[1, 'low'], [2, 'mid'], [3, 'high']])
    })

    test('box and whisker: quartiles, whiskers and outliers', async () => {
      const chart = await chartOf(`
  import matplotlib.pyplot as plt
  scores = {'North': [61, 70, 64, 73, 68], 'South': [80, 74, 55, 77, 71, 75], 'East': [50, 58, 64, 53, 60]}
  fig, ax = plt.subplots()
  ax.boxplot(scores.values(), labels=scores.keys(), patch_artist=True)
  ax.set_title('Scores')
  ax.set_xlabel('Region')
  ax.set_ylabel('Score (pts)')
  plt.show()
  `)
      assert.equal(chart.type, 'box_and_whisker')
      assert.equal(chart.title, 'Scores')
      assert.equal(chart.x_label, 'Region')
      assert.equal(chart.y_label, 'Score (pts)')
      assert.equal(chart.x_unit, null)
      assert.equal(chart.y_unit, 'pts')
      // numpy's percentiles (linear interpolation) of each list.
      assert.deepEqual(chart.elements, [
        { label: 'North', min: 61, first_quartile: 64, median: 68, third_quartile: 70, max: 73, outliers: [] },
        { label: 'South', min: 71, first_quartile: 71.75, median: 74.5, third_quartile: 76.5, max: 80, outliers: [55] },
        { label: 'East', min: 50, first_quartile: 53, median: 58, third_quartile: 60, max: 64, outliers: [] },
      ])
    })

    test('pie: exact angles in degrees', async () => {
      const chart = await chartOf(`
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots()
  ax.pie([1, 1, 1, 3], labels=['a', 'b', 'c', 'd'], startangle=90, autopct='%1.1f%%')
  plt.title('Shares')
  plt.show()
  `)
      assert.equal(chart.type, 'pie')
      assert.equal(chart.title, 'Shares')
      assert.deepEqual(chart.elements, [
        { label: 'a', angle: 60, radius: 1 },
        { label: 'b', angle: 60, radius: 1 },
        { label: 'c', angle: 60, radius: 1 },
        { label: 'd', angle: 180, radius: 1 },
      ])
    })

    test('bar chart: labels, values and groups', async () => {
      const chart = await chartOf(`
  import matplotlib.pyplot as plt
  plt.bar(['Mon', 'Tue', 'Wed'], [3, 7, 5], label='Visits')
  plt.xlabel('Day')
  plt.ylabel('Count')
  plt.title('Week')
  plt.show()
  `)
      assert.equal(chart.type, 'bar')
      assert.equal(chart.title, 'Week')
      assert.equal(chart.x_label, 'Day')
      assert.equal(chart.y_label, 'Count')
      assert.deepEqual(chart.elements, [
        { label: 'Mon', group: 'Visits', value: 3 },
        { label: 'Tue', group: 'Visits', value: 7 },
        { label: 'Wed', group: 'Visits', value: 5 },
      ])
    })

    test('scatter', async () => {
      const chart = await chartOf(`
  import matplotlib.pyplot as plt
  plt.scatter([1, 2, 3], [4, 1, 9], label='first')
  plt.scatter([5, 6], [2, 3], label='second')
  plt.xlabel('x')
  plt.ylabel('y')
  plt.show()
  `)
      assert.equal(chart.type, 'scatter')
      assert.equal(chart.x_scale, 'linear')
      assert.equal(chart.y_scale, 'linear')
      assert.ok(chart.x_ticks.every(isNumber) && chart.y_ticks.every(isNumber))
      assert.deepEqual(chart.elements, [
        { label: 'first', points: [[1, 4], [2, 1], [3, 9]] },
        { label: 'second', points: [[5, 2], [6, 3]] },
      ])
    })

    test('several subplots make a superchart', async () => {
      const chart = await chartOf(`
  import matplotlib.pyplot as plt
  fig, (left, right) = plt.subplots(1, 2)
  fig.suptitle('Overview')
  left.plot([0, 1, 2], [2, 4, 8], label='growth')
  left.set_title('Line')
  right.bar(['x', 'y'], [2, 5])
  right.set_title('Bars')
  plt.show()
  `)
      assert.equal(chart.type, 'superchart')
      assert.equal(chart.title, 'Overview')
      assert.deepEqual(chart.elements.map((c) => [c.type, c.title]), [['line', 'Line'], ['bar', 'Bars']])
      assert.deepEqual(chart.elements[0].elements, [{ label: 'growth', points: [[0, 2], [1, 4], [2, 8]] }])
      assert.deepEqual(chart.elements[1].elements, [
        { label: 'x', group: 'Group 0', value: 2 },
        { label: 'y', group: 'Group 0', value: 5 },
      ])
    })

    test('a chart of an unknown kind still comes back', async () => {
      const chart = await chartOf(`
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots()
  ax.add_artist(plt.Circle((0, 0), 1, fill=False))
  ax.add_artist(plt.Circle((0, 0), 2, fill=False))
  ax.set_xlim(-3, 3)
  ax.set_ylim(-3, 3)
  ax.grid(True)
  plt.title('Rings')
  plt.show()
  `)
      assert.equal(chart.type, 'unknown')
      assert.equal(chart.title, 'Rings')
      assert.deepEqual(chart.elements, [])
    })
  })
})
