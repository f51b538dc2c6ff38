package main

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"strconv"
	"strings"
)

// chartPoint is one measurement: X a rate in requests per second, Y a
// latency in milliseconds.
type chartPoint struct{ X, Y float64 }

// chartSeries is one line of the chart.
type chartSeries struct {
	Name   string
	Color  color.RGBA
	Dashed bool
	Points []chartPoint
}

// seriesColors are the colors of the targets, in order.
var seriesColors = []color.RGBA{{0x55, 0x55, 0x55, 0xff}, {0xd6, 0x27, 0x28, 0xff}}

// Chart geometry, in pixels.
const (
	chartW, chartH             = 800, 480
	marginL, marginR           = 70, 30
	marginT, marginB           = 50, 50
	glyphScale                 = 2
	glyphW, glyphH, glyphSpace = 3, 5, 1
)

var (
	colorBG   = color.RGBA{0xff, 0xff, 0xff, 0xff}
	colorAxis = color.RGBA{0x22, 0x22, 0x22, 0xff}
	colorGrid = color.RGBA{0xe4, 0xe4, 0xe4, 0xff}
)

// writeChart draws the series as lines on a linear rate axis and a
// logarithmic latency axis, and writes the PNG to path. It uses nothing
// but the standard library: lines are drawn pixel by pixel and text in a
// built-in 3×5 pixel font.
func writeChart(path, title string, series []chartSeries) error {
	img := drawChart(title, series)
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write chart: %w", err)
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return fmt.Errorf("write chart: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write chart: %w", err)
	}
	return nil
}

// drawChart renders the chart.
func drawChart(title string, series []chartSeries) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, chartW, chartH))
	fill(img, img.Bounds(), colorBG)

	maxX, minY, maxY := 0.0, math.Inf(1), 0.0
	for _, s := range series {
		for _, p := range s.Points {
			maxX = math.Max(maxX, p.X)
			if p.Y > 0 {
				minY, maxY = math.Min(minY, p.Y), math.Max(maxY, p.Y)
			}
		}
	}
	if maxX <= 0 || maxY <= 0 {
		maxX, minY, maxY = 1, 0.1, 1
	}
	xStep := niceStep(maxX / 5)
	xMax := math.Ceil(maxX/xStep) * xStep
	loDec := math.Floor(math.Log10(minY))
	hiDec := math.Max(math.Ceil(math.Log10(maxY)), loDec+1)

	plot := image.Rect(marginL, marginT, chartW-marginR, chartH-marginB)
	px := func(x float64) int { return plot.Min.X + int(math.Round(x/xMax*float64(plot.Dx()))) }
	py := func(y float64) int {
		f := (math.Log10(y) - loDec) / (hiDec - loDec)
		return plot.Max.Y - int(math.Round(f*float64(plot.Dy())))
	}

	// Grid, ticks and labels.
	for x := 0.0; x <= xMax+xStep/2; x += xStep {
		X := px(x)
		vline(img, X, plot.Min.Y, plot.Max.Y, colorGrid)
		label := strconv.FormatFloat(x, 'f', -1, 64)
		drawText(img, X-textWidth(label)/2, plot.Max.Y+8, label, colorAxis)
	}
	for d := loDec; d <= hiDec; d++ {
		Y := py(math.Pow(10, d))
		hline(img, plot.Min.X, plot.Max.X, Y, colorGrid)
		label := strconv.FormatFloat(math.Pow(10, d), 'f', -1, 64)
		drawText(img, plot.Min.X-8-textWidth(label), Y-glyphH*glyphScale/2, label, colorAxis)
	}
	hline(img, plot.Min.X, plot.Max.X, plot.Max.Y, colorAxis)
	vline(img, plot.Min.X, plot.Min.Y, plot.Max.Y, colorAxis)
	drawText(img, plot.Max.X-textWidth("req/s"), plot.Max.Y+26, "req/s", colorAxis)
	drawText(img, 8, plot.Min.Y-20, "ms", colorAxis)
	drawText(img, (chartW-textWidth(title))/2, 14, title, colorAxis)

	// Lines, then the legend.
	for _, s := range series {
		var prev *chartPoint
		for i := range s.Points {
			p := &s.Points[i]
			if p.Y <= 0 {
				continue
			}
			if prev != nil {
				line(img, px(prev.X), py(prev.Y), px(p.X), py(p.Y), s.Color, s.Dashed)
			}
			dot(img, px(p.X), py(p.Y), s.Color)
			prev = p
		}
	}
	lx, ly := plot.Min.X+16, plot.Min.Y+10
	for _, s := range series {
		line(img, lx, ly+4, lx+30, ly+4, s.Color, s.Dashed)
		drawText(img, lx+38, ly, s.Name, colorAxis)
		ly += 18
	}
	return img
}

// niceStep rounds a raw tick step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

func fill(img *image.RGBA, r image.Rectangle, c color.RGBA) {
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			img.SetRGBA(x, y, c)
		}
	}
}

func hline(img *image.RGBA, x0, x1, y int, c color.RGBA) {
	for x := x0; x <= x1; x++ {
		img.SetRGBA(x, y, c)
	}
}

func vline(img *image.RGBA, x, y0, y1 int, c color.RGBA) {
	for y := y0; y <= y1; y++ {
		img.SetRGBA(x, y, c)
	}
}

// line draws a 2-pixel line from (x0, y0) to (x1, y1) with Bresenham's
// algorithm; dashed lines draw 6 pixels of every 10.
func line(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA, dashed bool) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := sign(x1-x0), sign(y1-y0)
	e := dx + dy
	for n := 0; ; n++ {
		if !dashed || n%10 < 6 {
			img.SetRGBA(x0, y0, c)
			img.SetRGBA(x0+1, y0, c)
			img.SetRGBA(x0, y0+1, c)
		}
		if x0 == x1 && y0 == y1 {
			return
		}
		if e2 := 2 * e; e2 >= dy {
			e += dy
			x0 += sx
		} else {
			e += dx
			y0 += sy
		}
	}
}

func dot(img *image.RGBA, x, y int, c color.RGBA) {
	fill(img, image.Rect(x-2, y-2, x+3, y+3), c)
}

func abs(v int) int { return max(v, -v) }

func sign(v int) int {
	switch {
	case v > 0:
		return 1
	case v < 0:
		return -1
	}
	return 0
}

// font is a 3×5 pixel font: each glyph is five rows of three columns, '#'
// for ink. Letters are drawn as capitals; other characters as blanks.
var font = map[rune][glyphH]string{
	'0': {"###", "#.#", "#.#", "#.#", "###"}, '1': {".#.", "##.", ".#.", ".#.", "###"},
	'2': {"###", "..#", "###", "#..", "###"}, '3': {"###", "..#", ".##", "..#", "###"},
	'4': {"#.#", "#.#", "###", "..#", "..#"}, '5': {"###", "#..", "###", "..#", "###"},
	'6': {"###", "#..", "###", "#.#", "###"}, '7': {"###", "..#", ".#.", ".#.", ".#."},
	'8': {"###", "#.#", "###", "#.#", "###"}, '9': {"###", "#.#", "###", "..#", "###"},
	'.': {"...", "...", "...", "...", ".#."}, '/': {"..#", "..#", ".#.", "#..", "#.."},
	'(': {".#.", "#..", "#..", "#..", ".#."}, ')': {".#.", "..#", "..#", "..#", ".#."},
	'-': {"...", "...", "###", "...", "..."}, ':': {"...", ".#.", "...", ".#.", "..."},
	'A': {".#.", "#.#", "###", "#.#", "#.#"}, 'B': {"##.", "#.#", "##.", "#.#", "##."},
	'C': {".##", "#..", "#..", "#..", ".##"}, 'D': {"##.", "#.#", "#.#", "#.#", "##."},
	'E': {"###", "#..", "##.", "#..", "###"}, 'F': {"###", "#..", "##.", "#..", "#.."},
	'G': {".##", "#..", "#.#", "#.#", ".##"}, 'H': {"#.#", "#.#", "###", "#.#", "#.#"},
	'I': {"###", ".#.", ".#.", ".#.", "###"}, 'J': {"..#", "..#", "..#", "#.#", ".#."},
	'K': {"#.#", "#.#", "##.", "#.#", "#.#"}, 'L': {"#..", "#..", "#..", "#..", "###"},
	'M': {"#.#", "###", "###", "#.#", "#.#"}, 'N': {"##.", "#.#", "#.#", "#.#", "#.#"},
	'O': {".#.", "#.#", "#.#", "#.#", ".#."}, 'P': {"##.", "#.#", "##.", "#..", "#.."},
	'Q': {".#.", "#.#", "#.#", "##.", ".##"}, 'R': {"##.", "#.#", "##.", "#.#", "#.#"},
	'S': {".##", "#..", ".#.", "..#", "##."}, 'T': {"###", ".#.", ".#.", ".#.", ".#."},
	'U': {"#.#", "#.#", "#.#", "#.#", "###"}, 'V': {"#.#", "#.#", "#.#", "#.#", ".#."},
	'W': {"#.#", "#.#", "###", "###", "#.#"}, 'X': {"#.#", "#.#", ".#.", "#.#", "#.#"},
	'Y': {"#.#", "#.#", ".#.", ".#.", ".#."}, 'Z': {"###", "..#", ".#.", "#..", "###"},
}

func textWidth(s string) int {
	n := len([]rune(s))
	return n*(glyphW+glyphSpace)*glyphScale - glyphSpace*glyphScale
}

// drawText writes s with its top-left corner at (x, y).
func drawText(img *image.RGBA, x, y int, s string, c color.RGBA) {
	for _, r := range strings.ToUpper(s) {
		if g, ok := font[r]; ok {
			for row, bits := range g {
				for col, b := range bits {
					if b == '#' {
						fill(img, image.Rect(x+col*glyphScale, y+row*glyphScale, x+(col+1)*glyphScale, y+(row+1)*glyphScale), c)
					}
				}
			}
		}
		x += (glyphW + glyphSpace) * glyphScale
	}
}
